"""Small layers shared by rtseg's networks, one idea each."""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ConvBN", "ConvBNReLU", "DSConv", "InvertedResidual", "PyramidPooling", "adaptive_avg_pool2d_exact", "init_weights",
           "resize_to", "resize_matmul"]


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize to an explicit (h, w). Never by a scale factor: with a factor, inputs
    that are not multiples of 32 end up one pixel off and the branches no longer add.

    When a gradient will flow back (training), the same interpolation runs as two matrix
    products (:func:`resize_matmul`): PyTorch's bilinear backward scatters with atomic adds, and
    enlarging Fast-SCNN's three 1/8-size logit maps to 360x480 made it 17.5 of a 28 ms training
    step on an H200 (benchmarks/results/train_step_profile_h200.json). Inference and export
    keep ``F.interpolate`` (one ONNX Resize)."""
    if x.requires_grad and torch.is_grad_enabled() and not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
        return resize_matmul(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n_out, n_in) weights of 1-D bilinear interpolation exactly as ``F.interpolate`` computes
    it with align_corners=False and an explicit size: source position (i + 0.5) * n_in / n_out - 0.5,
    clamped at 0; the right neighbour clamped at the last pixel."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = src - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1 - w1, accumulate=True)
    m.index_put_((rows, i1), w1, accumulate=True)
    return m.to(device=device, dtype=dtype)


def resize_matmul(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` as M_h @ x @ M_w^T:
    the same values, and a backward made of matrix products instead of atomic adds."""
    h, w = int(size[0]), int(size[1])
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    m_h = _bilinear_matrix(x.shape[-2], h, x.device, dtype)
    m_w = _bilinear_matrix(x.shape[-1], w, x.device, dtype)
    return torch.matmul(torch.matmul(m_h, x), m_w.t())


def init_weights(model: nn.Module) -> None:
    """He (fan-out) initialisation for convolutions, BatchNorm as identity: what every rtseg
    network uses when trained from scratch."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ConvBN(nn.Sequential):
    """Conv and BatchNorm, no activation (a projection, or a branch added to another before its ReLU)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


class ConvBNReLU(nn.Sequential):
    """Conv, BatchNorm, ReLU (the conv has no bias: BatchNorm supplies it)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, padding=dilation * (k // 2), dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class DSConv(nn.Sequential):
    """Depthwise-separable conv: 3x3 depthwise (carries the stride) then 1x1 pointwise."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(ConvBNReLU(cin, cin, 3, stride, groups=cin), ConvBNReLU(cin, cout, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: 1x1 expand by t, 3x3 depthwise, linear 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, t: int = 6):
        super().__init__()
        hidden = cin * t
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            ConvBNReLU(cin, hidden, 1),
            ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_res else out


def _pool_matrix(n: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, n) matrix: row i averages the window PyTorch's adaptive pooling uses for bin i,
    i.e. [floor(i*n/bins), ceil((i+1)*n/bins))."""
    i = torch.arange(bins, device=like.device)
    start = (i * n) // bins
    end = ((i + 1) * n + bins - 1) // bins
    pos = torch.arange(n, device=like.device)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def adaptive_avg_pool2d_exact(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Same result as ``F.adaptive_avg_pool2d(x, bins)`` for any feature-map size, built from
    two matrix products so that it exports to ONNX (and TensorRT) even when the map is not
    divisible by ``bins`` -- the case that breaks public Fast-SCNN exports. Cost is negligible:
    the map is 1/32 of the input."""
    h, w = x.shape[-2], x.shape[-1]
    ph = _pool_matrix(h, bins, x)  # (bins, h)
    pw = _pool_matrix(w, bins, x)  # (bins, w)
    return torch.matmul(torch.matmul(ph, x), pw.transpose(0, 1))  # (N, C, bins, bins)


class PyramidPooling(nn.Module):
    """PSPNet pyramid pooling: pool to each bin size, 1x1 conv to C/4, upsample, concat, 1x1 fuse."""

    def __init__(self, cin: int, cout: int, bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.bins = bins
        inter = cin // 4
        self.stages = nn.ModuleList(ConvBNReLU(cin, inter, 1) for _ in bins)
        self.project = ConvBNReLU(cin + inter * len(bins), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = [x]
        for bins, stage in zip(self.bins, self.stages):
            feats.append(resize_to(stage(adaptive_avg_pool2d_exact(x, bins)), size))
        return self.project(torch.cat(feats, dim=1))
