"""Shared layers: the matrix-product bilinear resize used while training equals F.interpolate,
values and gradients, at every kind of size the networks meet."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rtseg
from rtseg.nets.layers import resize_matmul, resize_to

# (h, w) -> (H, W): x8 logits, pyramid bins 1..6 up to a map, sizes off multiples of 32, shrinking, identity.
SIZES = [((45, 60), (360, 480)), ((1, 1), (32, 64)), ((3, 3), (32, 64)), ((6, 6), (11, 13)),
         ((7, 9), (100, 77)), ((64, 96), (32, 48)), ((45, 60), (45, 60))]


@pytest.mark.parametrize("src, dst", SIZES)
def test_resize_matmul_equals_interpolate_with_its_gradient(src, dst):
    x = torch.randn(2, 3, *src, dtype=torch.float64, requires_grad=True)
    ref = F.interpolate(x, size=dst, mode="bilinear", align_corners=False)
    got = resize_matmul(x, dst)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-12)
    g = torch.randn_like(ref)
    (g_ref,) = torch.autograd.grad(ref, x, g)
    (g_got,) = torch.autograd.grad(got, x, g)
    assert torch.allclose(g_got, g_ref, atol=1e-10)


def test_resize_to_takes_the_matrix_path_only_when_a_gradient_flows(monkeypatch):
    calls = []
    monkeypatch.setattr("rtseg.nets.layers.resize_matmul", lambda x, size: calls.append(size) or F.interpolate(x, size))
    x = torch.randn(1, 2, 4, 4)
    resize_to(x, (8, 8))
    resize_to(x.requires_grad_(), (8, 8))
    with torch.no_grad():
        resize_to(x, (8, 8))
    assert calls == [(8, 8)]


def test_the_network_gives_the_same_logits_with_and_without_a_gradient():
    # Both calls in training mode (BatchNorm on batch statistics), dropout off: only the resizes differ.
    torch.manual_seed(0)
    net = rtseg.create_model("fastscnn", num_classes=5, dropout=0.0).train()
    x = torch.randn(2, 3, 100, 77)
    with_grad = net(x)  # the matmul resizes
    with torch.no_grad():
        without = net(x)  # F.interpolate
    assert torch.allclose(with_grad, without, atol=1e-4)
