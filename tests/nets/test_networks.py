"""Every registered network, as timm tests its models: logits at the input size for sizes that
are not multiples of 32, the papers' parameter budgets, auxiliary heads in training mode only
with the papers' loss weights, options carried by the checkpoint, and the loss falling when a
few real CamVid frames are learnt."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import rtseg
from rtseg.formats.checkpoint import build_from_checkpoint, save_checkpoint
from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta
from rtseg.train.losses import build_loss

NETWORKS = rtseg.list_models()

# Parameters for 19 classes (Cityscapes), from the papers: Fast-SCNN 1.11M, DDRNet-23-slim 5.7M,
# BiSeNetV2 about 3.3M (3.35M in the reference code with its 1024-channel head), U-Net 31.0M at
# width 64 (ours adds BatchNorm: a few thousand more) and a quarter of that at width 32.
PARAMS = {"fastscnn": (1.0e6, 1.2e6), "ddrnet23_slim": (5.6e6, 5.8e6), "bisenetv2": (3.2e6, 3.45e6),
          "unet": (7.6e6, 7.9e6)}
# Each paper's auxiliary-loss weights, one per head.
AUX_WEIGHTS = {"fastscnn": (0.4, 0.4), "ddrnet23_slim": (0.4,), "bisenetv2": (1.0, 1.0, 1.0, 1.0), "unet": ()}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_registry_holds_the_four_networks():
    assert NETWORKS == ["bisenetv2", "ddrnet23_slim", "fastscnn", "unet"]
    assert set(PARAMS) == set(AUX_WEIGHTS) == set(NETWORKS)


@pytest.fixture(scope="module", params=NETWORKS)
def named_net(request) -> tuple[str, torch.nn.Module]:
    torch.manual_seed(0)
    return request.param, rtseg.create_model(request.param, num_classes=19).eval()


@pytest.mark.parametrize("size", [(360, 480), (100, 77), (720, 1280), (33, 47),
                                  pytest.param((1080, 1920), marks=pytest.mark.slow)])
def test_logits_at_any_input_size(named_net, size):
    _, net = named_net
    # None of these is a multiple of 32: every resize must go to a size taken from a tensor.
    with torch.inference_mode():
        out = net(torch.randn(1, 3, *size))
    assert out.shape == (1, 19, *size)
    assert torch.isfinite(out).all()


def test_parameter_count_matches_the_paper(named_net):
    name, net = named_net
    lo, hi = PARAMS[name]
    assert lo <= _params(net) <= hi, _params(net)


def test_unet_width_option():
    classic = rtseg.create_model("unet", num_classes=19, width=64)
    assert 31.0e6 <= _params(classic) <= 31.1e6  # the paper's 31.0M, plus BatchNorm
    with pytest.raises(RtsegError, match="width must be >= 1"):
        rtseg.create_model("unet", width=0)
    with pytest.raises(RtsegError, match="fastscnn does not take width; it takes: num_classes, aux"):
        rtseg.create_model("fastscnn", width=64)


@pytest.mark.parametrize("name", NETWORKS)
def test_aux_heads_only_in_training_mode(name):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 72, 100)
    net = rtseg.create_model(name, num_classes=5, aux=True).train()
    assert net.aux_weights == AUX_WEIGHTS[name]
    out = net(x)
    if AUX_WEIGHTS[name]:
        logits, aux = out
        assert [a.shape for a in aux] == [(2, 5, 72, 100)] * len(AUX_WEIGHTS[name])
    else:
        logits = out
    assert logits.shape == (2, 5, 72, 100)
    net.eval()
    with torch.inference_mode():
        assert net(x).shape == (2, 5, 72, 100)  # plain logits in eval mode
    plain = rtseg.create_model(name, num_classes=5)
    assert plain.aux_weights == () and isinstance(plain.train()(x), torch.Tensor)
    assert _params(plain) <= _params(net)
    # The aux heads' weights never reach inference: a checkpoint of the aux model loads into the plain one.
    assert {k for k in net.state_dict() if not k.startswith("aux_heads.")} == set(plain.state_dict())


def test_checkpoint_carries_the_builders_options(tmp_path):
    net = rtseg.create_model("unet", num_classes=11, width=8).eval()
    meta = ModelMeta.for_dataset("camvid", model="unet", model_args={"width": 8})
    path = save_checkpoint(tmp_path / "unet8.pt", net, meta)
    loaded, got = build_from_checkpoint(path)
    assert got.model_args == {"width": 8} and loaded.inc[0][0].out_channels == 8
    wrong = save_checkpoint(tmp_path / "wrong.pt", net, ModelMeta.for_dataset("camvid", model="unet"))
    with pytest.raises(RtsegError, match="do not fit unet with 11 classes"):
        build_from_checkpoint(wrong)  # width 8 weights read as the default width 32


def _camvid_batch(root, n: int = 2, size=(96, 128)) -> tuple[torch.Tensor, torch.Tensor]:
    images = sorted((root / "train").glob("*.png"))[:n]
    xs, ys = [], []
    for path in images:
        img = cv2.resize(cv2.imread(str(path)), size[::-1], interpolation=cv2.INTER_AREA)[:, :, ::-1]
        lab = cv2.resize(cv2.imread(str(root / "trainannot" / path.name), cv2.IMREAD_GRAYSCALE), size[::-1],
                         interpolation=cv2.INTER_NEAREST)
        xs.append((img.astype(np.float32) / 255 - 0.45) / 0.25)
        ys.append(lab.astype(np.int64))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(np.stack(ys))


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_loss_falls_on_a_few_real_frames(name, camvid_root):
    torch.manual_seed(0)
    x, y = _camvid_batch(camvid_root)
    net = rtseg.create_model(name, num_classes=11, aux=True).train()
    criterion = build_loss("ce", ignore_index=11, aux_weight=net.aux_weights or 0.4)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = criterion(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:2]), losses
