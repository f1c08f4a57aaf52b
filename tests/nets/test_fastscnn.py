"""Fast-SCNN: shapes at awkward sizes, the paper's parameter budget, training-only aux heads,
the ONNX-friendly pyramid pooling, and the registry."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rtseg
from rtseg.errors import RtsegError
from rtseg.nets.layers import adaptive_avg_pool2d_exact


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def net19() -> torch.nn.Module:
    torch.manual_seed(0)
    return rtseg.create_model("fastscnn", num_classes=19).eval()


@pytest.mark.parametrize("size", [(360, 480), (100, 77), (720, 1280), (1080, 1920)])
def test_forward_returns_logits_at_input_size(net19, size):
    # 100x77, 360x480, 720x1280 and 1080x1920 are not multiples of 32: resizes must be to explicit sizes.
    with torch.inference_mode():
        out = net19(torch.randn(1, 3, *size))
    assert out.shape == (1, 19, *size)
    assert torch.isfinite(out).all()


def test_parameter_count_matches_the_paper(net19):
    # The paper: 1.11M parameters (Cityscapes, 19 classes).
    n = _params(net19)
    assert 1_000_000 <= n <= 1_200_000, n


def test_aux_heads_only_in_training_mode():
    torch.manual_seed(0)
    net = rtseg.create_model("fastscnn", num_classes=5, aux=True)
    x = torch.randn(2, 3, 96, 128)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 5, 96, 128)
    assert [a.shape for a in aux] == [(2, 5, 96, 128)] * 2
    net.eval()
    with torch.inference_mode():
        out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, 96, 128)
    # Without aux heads there are no extra parameters and training mode returns plain logits.
    plain = rtseg.create_model("fastscnn", num_classes=5).train()
    assert isinstance(plain(x), torch.Tensor)
    assert _params(plain) < _params(net)


@pytest.mark.parametrize("hw", [(32, 64), (23, 40), (11, 15), (5, 7), (1, 1), (45, 60)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_matrix_pooling_equals_adaptive_avg_pool(hw, bins):
    x = torch.randn(2, 8, *hw, dtype=torch.float64)
    torch.testing.assert_close(adaptive_avg_pool2d_exact(x, bins), F.adaptive_avg_pool2d(x, bins))


def test_registry():
    assert "fastscnn" in rtseg.list_models()
    with pytest.raises(RtsegError, match="unknown model 'nope'.*fastscnn"):
        rtseg.create_model("nope")
