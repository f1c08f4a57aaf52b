"""Fast-SCNN: Fast Semantic Segmentation Network.

Poudel, Liwicki, Cipolla, "Fast-SCNN: Fast Semantic Segmentation Network", BMVC 2019,
arXiv:1902.04502. 1.11M parameters; 68.0% mIoU on Cityscapes test at 123.5 fps (1024x2048).

Learning to downsample (1/8) -> global feature extractor (1/32, pyramid pooling) ->
feature fusion (1/8) -> classifier -> logits bilinearly resized to the input size.
Every input size works: all resizes are to explicit sizes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from rtseg.nets.layers import ConvBNReLU, DSConv, InvertedResidual, PyramidPooling, init_weights, resize_to
from rtseg.nets.registry import register_model

__all__ = ["FastSCNN", "fastscnn"]


class LearningToDownsample(nn.Module):
    """Conv 32 s2, DSConv 48 s2, DSConv 64 s2: 1/8 resolution, 64 channels."""

    def __init__(self):
        super().__init__()
        self.conv = ConvBNReLU(3, 32, 3, stride=2)
        self.ds1 = DSConv(32, 48, stride=2)
        self.ds2 = DSConv(48, 64, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ds2(self.ds1(self.conv(x)))


def _bottlenecks(cin: int, cout: int, n: int, stride: int, t: int) -> nn.Sequential:
    return nn.Sequential(*(InvertedResidual(cin if i == 0 else cout, cout, stride if i == 0 else 1, t) for i in range(n)))


class GlobalFeatureExtractor(nn.Module):
    """Bottlenecks (t=6): 64 x3 s2, 96 x3 s2, 128 x3 s1, then pyramid pooling: 1/32, 128 channels."""

    def __init__(self, t: int = 6):
        super().__init__()
        self.stage1 = _bottlenecks(64, 64, 3, 2, t)
        self.stage2 = _bottlenecks(64, 96, 3, 2, t)
        self.stage3 = _bottlenecks(96, 128, 3, 1, t)
        self.ppm = PyramidPooling(128, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ppm(self.stage3(self.stage2(self.stage1(x))))


class FeatureFusion(nn.Module):
    """Low-res branch: upsample to the high-res size, 3x3 depthwise conv (dilation 4), 1x1 conv.
    High-res branch: 1x1 conv. Added, then ReLU."""

    def __init__(self, high_in: int = 64, low_in: int = 128, cout: int = 128):
        super().__init__()
        self.low_dw = ConvBNReLU(low_in, low_in, 3, groups=low_in, dilation=4)
        self.low_pw = nn.Sequential(nn.Conv2d(low_in, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.high_pw = nn.Sequential(nn.Conv2d(high_in, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.low_pw(self.low_dw(resize_to(low, high.shape[-2:])))
        return self.relu(self.high_pw(high) + low)


class Classifier(nn.Sequential):
    """Two DSConvs and a 1x1 conv to class logits (at 1/8 resolution)."""

    def __init__(self, cin: int, num_classes: int, dropout: float = 0.1):
        super().__init__(DSConv(cin, cin), DSConv(cin, cin), nn.Dropout(dropout), nn.Conv2d(cin, num_classes, 1))


class AuxHead(nn.Sequential):
    """Training-only auxiliary classifier (the paper weights its loss 0.4)."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__(ConvBNReLU(cin, 32, 3), nn.Dropout(0.1), nn.Conv2d(32, num_classes, 1))


class FastSCNN(nn.Module):
    """Fast-SCNN. ``forward`` returns logits (N, num_classes, H, W) at the input size; in
    training mode with ``aux=True`` it returns ``(logits, [aux logits, ...])`` instead."""

    def __init__(self, num_classes: int = 19, *, aux: bool = False, dropout: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.downsample = LearningToDownsample()
        self.global_features = GlobalFeatureExtractor()
        self.fusion = FeatureFusion(64, 128, 128)
        self.classifier = Classifier(128, num_classes, dropout)
        # Aux heads on the learning-to-downsample and global-feature outputs, as in the paper,
        # each loss weighted 0.4.
        self.aux_weights = (0.4, 0.4) if aux else ()
        self.aux_heads = nn.ModuleList([AuxHead(64, num_classes), AuxHead(128, num_classes)]) if aux else None
        init_weights(self)

    def _scores(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Logits at 1/8 (N, C, H/8, W/8), before the final upsample, and the aux heads' features."""
        high = self.downsample(x)  # (N, 64, H/8, W/8)
        low = self.global_features(high)  # (N, 128, H/32, W/32)
        return self.classifier(self.fusion(high, low)), (high, low)

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        scores, feats = self._scores(x)
        logits = resize_to(scores, size)
        if self.training and self.aux_heads is not None:
            return logits, [resize_to(head(f), size) for head, f in zip(self.aux_heads, feats)]
        return logits

    def forward_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits at the input size, the same logits at 1/8 before their upsample): what
        ``forward`` gives in eval mode, and the class scores at the network's own resolution."""
        scores, _ = self._scores(x)
        return resize_to(scores, x.shape[-2:]), scores


@register_model
def fastscnn(*, num_classes: int = 19, aux: bool = False, dropout: float = 0.1) -> FastSCNN:
    """Fast-SCNN as in the paper (about 1.1M parameters for 19 classes)."""
    return FastSCNN(num_classes, aux=aux, dropout=dropout)
