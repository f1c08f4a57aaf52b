"""Small layers shared by rtseg's networks, one idea each."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ConvBNReLU", "DSConv", "InvertedResidual", "PyramidPooling", "adaptive_avg_pool2d_exact", "resize_to"]


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize to an explicit (h, w). Never by a scale factor: with a factor, inputs
    that are not multiples of 32 end up one pixel off and the branches no longer add."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


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
