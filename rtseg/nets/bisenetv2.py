"""BiSeNet V2: Bilateral Network with Guided Aggregation.

Yu, Gao, Wang, Yu, Shen, Sang, "BiSeNet V2: Bilateral Network with Guided Aggregation for
Real-time Semantic Segmentation", IJCV 2021, arXiv:2004.02147. 72.6% mIoU on Cityscapes test at
156 fps (512x1024, trained from scratch); about 3.3M parameters for 19 classes.

Two branches: the detail branch (wide and shallow: 3x3 convs to 1/8, 128 channels) keeps spatial
detail; the semantic branch (narrow and deep: a stem, gather-and-expand layers to 1/32 and a
context embedding) gathers context. Bilateral guided aggregation lets each branch gate the other
(sigmoid attention at 1/8 and at 1/32) before they are summed. Booster heads on four semantic
stages train the branch (training only; the paper weights each loss 1).

Every input size works: the semantic branch is upsampled to the detail branch's size taken from
the tensor (a fixed 4x fails off multiples of 32), and both branches halve a size the same way
(3x3, stride 2, padding 1: ceil(n/2)), so their 1/32 maps always match.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from rtseg.nets.layers import ConvBN, ConvBNReLU, init_weights, resize_to
from rtseg.nets.registry import register_model

__all__ = ["BiSeNetV2", "bisenetv2"]


class DetailBranch(nn.Sequential):
    """S1: 64 s2, 64; S2: 64 s2, 64, 64; S3: 128 s2, 128, 128 (3x3 conv-BN-ReLU each): 1/8, 128."""

    def __init__(self):
        super().__init__(
            ConvBNReLU(3, 64, 3, 2), ConvBNReLU(64, 64),
            ConvBNReLU(64, 64, 3, 2), ConvBNReLU(64, 64), ConvBNReLU(64, 64),
            ConvBNReLU(64, 128, 3, 2), ConvBNReLU(128, 128), ConvBNReLU(128, 128),
        )


class StemBlock(nn.Module):
    """3x3 conv 16 s2, then two ways down to 1/4 (1x1 conv 8 + 3x3 conv 16 s2; 3x3 max pool s2),
    concatenated and fused by a 3x3 conv: 1/4, 16 channels."""

    def __init__(self, cout: int = 16):
        super().__init__()
        self.conv = ConvBNReLU(3, cout, 3, 2)
        self.left = nn.Sequential(ConvBNReLU(cout, cout // 2, 1), ConvBNReLU(cout // 2, cout, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNReLU(cout * 2, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class GatherExpand(nn.Module):
    """Gather-and-expand layer: 3x3 conv (gather), 3x3 depthwise conv expanding the channels by
    ``e`` (a second depthwise conv when striding), 1x1 linear projection; residual, then ReLU.
    With stride 2 the shortcut is a strided 3x3 depthwise conv and a 1x1 conv."""

    def __init__(self, cin: int, cout: int, stride: int = 1, e: int = 6):
        super().__init__()
        mid = cin * e
        layers = [ConvBNReLU(cin, cin), *ConvBN(cin, mid, 3, stride, groups=cin)]
        if stride == 2:
            layers += ConvBN(mid, mid, 3, 1, groups=mid)
        self.body = nn.Sequential(*layers, *ConvBN(mid, cout, 1))
        self.shortcut = (nn.Sequential(*ConvBN(cin, cin, 3, stride, groups=cin), *ConvBN(cin, cout, 1))
                         if stride != 1 or cin != cout else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    """Global average pool, BN, 1x1 conv-BN-ReLU, broadcast-added to the input, 3x3 conv."""

    def __init__(self, c: int = 128):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.gap_conv = ConvBNReLU(c, c, 1)
        self.conv = ConvBNReLU(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.gap_conv(self.bn(x.mean(dim=(2, 3), keepdim=True)))  # (N, C, 1, 1); exports as ReduceMean
        return self.conv(x + context)


class SemanticBranch(nn.Module):
    """Stem (1/4, 16), GE 32 (1/8), GE 64 (1/16), GE 128 x4 (1/32), context embedding.
    Returns every stage's output: the last feeds the aggregation, the first four the boosters."""

    def __init__(self):
        super().__init__()
        self.stem = StemBlock(16)
        self.s3 = nn.Sequential(GatherExpand(16, 32, 2), GatherExpand(32, 32))
        self.s4 = nn.Sequential(GatherExpand(32, 64, 2), GatherExpand(64, 64))
        self.s5 = nn.Sequential(GatherExpand(64, 128, 2), *(GatherExpand(128, 128) for _ in range(3)))
        self.ce = ContextEmbedding(128)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s2 = self.stem(x)
        s3 = self.s3(s2)
        s4 = self.s4(s3)
        s5 = self.s5(s4)
        return [s2, s3, s4, s5, self.ce(s5)]


class GuidedAggregation(nn.Module):
    """Bilateral guided aggregation. Detail (1/8) and semantic (1/32) features gate each other:
    detail x sigmoid(semantic upsampled) at 1/8, and (detail strided to 1/32) x sigmoid(semantic)
    at 1/32, upsampled; the two are summed and fused by a 3x3 conv."""

    def __init__(self, c: int = 128):
        super().__init__()
        self.detail_keep = nn.Sequential(*ConvBN(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.detail_down = nn.Sequential(*ConvBN(c, c, 3, 2), nn.AvgPool2d(3, 2, 1))
        self.semantic_keep = nn.Sequential(*ConvBN(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.semantic_up = ConvBN(c, c, 3)
        self.fuse = ConvBNReLU(c, c)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        size = detail.shape[-2:]
        high = self.detail_keep(detail) * torch.sigmoid(resize_to(self.semantic_up(semantic), size))
        low = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        return self.fuse(high + resize_to(low, size))


class SegHead(nn.Sequential):
    """3x3 conv-BN-ReLU to ``mid`` channels, dropout, 1x1 conv to class logits."""

    def __init__(self, cin: int, mid: int, num_classes: int, dropout: float = 0.1):
        super().__init__(ConvBNReLU(cin, mid), nn.Dropout(dropout), nn.Conv2d(mid, num_classes, 1))


class BiSeNetV2(nn.Module):
    """BiSeNet V2. ``forward`` returns logits (N, num_classes, H, W) at the input size; in
    training mode with ``aux=True`` it returns ``(logits, [booster logits x4])``."""

    def __init__(self, num_classes: int = 19, *, aux: bool = False, head_mid: int = 1024):
        super().__init__()
        self.num_classes = num_classes
        self.detail = DetailBranch()
        self.semantic = SemanticBranch()
        self.aggregate = GuidedAggregation(128)
        self.head = SegHead(128, head_mid, num_classes)
        # Booster heads on the stem, S3, S4 and S5 (before the context embedding); weight 1 each.
        self.aux_weights = (1.0, 1.0, 1.0, 1.0) if aux else ()
        self.aux_heads = nn.ModuleList(SegHead(c, 128, num_classes) for c in (16, 32, 64, 128)) if aux else None
        init_weights(self)

    def _scores(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits at 1/8 (N, C, H/8, W/8), before the final upsample, and the semantic features."""
        feats = self.semantic(x)
        return self.head(self.aggregate(self.detail(x), feats[-1])), feats

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        scores, feats = self._scores(x)
        logits = resize_to(scores, size)
        if self.training and self.aux_heads is not None:
            return logits, [resize_to(head(f), size) for head, f in zip(self.aux_heads, feats[:4])]
        return logits

    def forward_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits at the input size, the same logits at 1/8 before their upsample)."""
        scores, _ = self._scores(x)
        return resize_to(scores, x.shape[-2:]), scores


@register_model
def bisenetv2(*, num_classes: int = 19, aux: bool = False) -> BiSeNetV2:
    """BiSeNet V2 as in the paper (about 3.3M parameters for 19 classes, head of 1024 channels)."""
    return BiSeNetV2(num_classes, aux=aux)
