"""DDRNet-23-slim: Deep Dual-resolution Network.

Hong, Pan, Sun, Jia, "Deep Dual-resolution Networks for Real-time and Accurate Semantic
Segmentation of Road Scenes", arXiv:2101.06085 (2021). 5.7M parameters; 77.4% mIoU on Cityscapes
test at 101.6 fps (1024x2048, ImageNet-pretrained); 74.3 on val trained from scratch.

A ResNet stem to 1/8, then two branches: a high-resolution one that stays at 1/8 (64 channels)
and a low-resolution one that goes on to 1/16 and 1/32 (128, 256 channels). After stages 3 and
4 the branches exchange information both ways (bilateral fusion: the high branch adds the low
one upsampled, the low branch adds the high one strided down). A bottleneck takes the low branch
to 1/64, where the Deep Aggregation Pyramid Pooling Module (DAPPM) gathers context; its output,
upsampled, is added to the high branch and classified at 1/8. Plain conv-BN-ReLU throughout,
which suits TensorRT and int8.

Every input size works: sizes are taken from tensors (never ``H // 8``), and both branches
halve a size with 3x3 stride-2 convolutions (padding 1, i.e. ceil(n/2)), so they always meet.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rtseg.nets.layers import ConvBN, init_weights, resize_to
from rtseg.nets.registry import register_model

__all__ = ["DDRNet", "ddrnet23_slim"]


def _bn_relu_conv(cin: int, cout: int, k: int) -> nn.Sequential:
    """Pre-activation conv (BN, ReLU, conv), as DAPPM and the heads use."""
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, k, padding=k // 2, bias=False))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs and a shortcut. The last block of a stage leaves out
    the final ReLU: its output is also fused into the other branch, and ReLU is applied after."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1, relu: bool = True):
        super().__init__()
        self.conv1 = nn.Sequential(*ConvBN(cin, cout, 3, stride), nn.ReLU(inplace=True))
        self.conv2 = ConvBN(cout, cout, 3)
        self.shortcut = ConvBN(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x)) + self.shortcut(x)
        return F.relu(out) if self.relu else out


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3, 1x1) that doubles the channels: ``cout = 2 * width``."""

    expansion = 2

    def __init__(self, cin: int, width: int, stride: int = 1, relu: bool = True):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            *ConvBN(cin, width, 1), nn.ReLU(inplace=True),
            *ConvBN(width, width, 3, stride), nn.ReLU(inplace=True),
            *ConvBN(width, cout, 1),
        )
        self.shortcut = ConvBN(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x) + self.shortcut(x)
        return F.relu(out) if self.relu else out


def _stage(block: type, cin: int, width: int, n: int, stride: int = 1) -> nn.Sequential:
    """n blocks, the first carrying the stride; as in the paper's code, the last of several
    blocks has no final ReLU (a single block keeps it)."""
    layers = [block(cin, width, stride, relu=n == 1)]
    layers += [block(width * block.expansion, width, 1, relu=i < n - 1) for i in range(1, n)]
    return nn.Sequential(*layers)


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module: average pools with kernels 5, 9, 17 (strides 2,
    4, 8) and a global pool, each to ``branch`` channels; every scale is upsampled, added to the
    one before it and refined by a 3x3 conv (hierarchical residual fusion); all five are
    concatenated, compressed to ``cout`` and added to a 1x1 shortcut. Runs at 1/64, so it is cheap."""

    def __init__(self, cin: int, branch: int, cout: int):
        super().__init__()
        self.pools = nn.ModuleList(nn.AvgPool2d(k, s, s) for k, s in ((5, 2), (9, 4), (17, 8)))
        self.scale0 = _bn_relu_conv(cin, branch, 1)
        self.scales = nn.ModuleList(_bn_relu_conv(cin, branch, 1) for _ in range(4))  # 3 pools + global
        self.process = nn.ModuleList(_bn_relu_conv(branch, branch, 3) for _ in range(4))
        self.compress = _bn_relu_conv(branch * 5, cout, 1)
        self.shortcut = _bn_relu_conv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [pool(x) for pool in self.pools] + [x.mean(dim=(2, 3), keepdim=True)]  # global pool: exports as ReduceMean
        feats = [self.scale0(x)]
        for p, scale, process in zip(pooled, self.scales, self.process):
            feats.append(process(resize_to(scale(p), size) + feats[-1]))
        return self.compress(torch.cat(feats, dim=1)) + self.shortcut(x)


class SegHead(nn.Sequential):
    """BN, ReLU, 3x3 conv to ``mid``, BN, ReLU, 1x1 conv to class logits."""

    def __init__(self, cin: int, mid: int, num_classes: int):
        super().__init__(_bn_relu_conv(cin, mid, 3), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, num_classes, 1))


class DDRNet(nn.Module):
    """DDRNet-23(-slim). ``forward`` returns logits (N, num_classes, H, W) at the input size; in
    training mode with ``aux=True`` it returns ``(logits, [aux logits])``: the paper's extra head
    on the high-resolution branch after stage 3, its loss weighted 0.4."""

    def __init__(self, num_classes: int = 19, *, planes: int = 32, spp_planes: int = 128, head_planes: int = 64,
                 blocks: tuple[int, int, int, int] = (2, 2, 2, 2), aux: bool = False):
        super().__init__()
        self.num_classes = num_classes
        high = planes * 2  # the high-resolution branch's width
        self.stem = nn.Sequential(  # 1/4
            *ConvBN(3, planes, 3, 2), nn.ReLU(inplace=True), *ConvBN(planes, planes, 3, 2), nn.ReLU(inplace=True))
        self.layer1 = _stage(BasicBlock, planes, planes, blocks[0])  # 1/4, 32
        self.layer2 = _stage(BasicBlock, planes, planes * 2, blocks[1], 2)  # 1/8, 64
        # Low-resolution branch
        self.layer3 = _stage(BasicBlock, planes * 2, planes * 4, blocks[2], 2)  # 1/16, 128
        self.layer4 = _stage(BasicBlock, planes * 4, planes * 8, blocks[3], 2)  # 1/32, 256
        self.layer5 = _stage(Bottleneck, planes * 8, planes * 8, 1, 2)  # 1/64, 512
        # High-resolution branch, at 1/8 throughout
        self.layer3_ = _stage(BasicBlock, planes * 2, high, 2)
        self.layer4_ = _stage(BasicBlock, high, high, 2)
        self.layer5_ = _stage(Bottleneck, high, high, 1)  # 2 x high channels out
        # Bilateral fusion: high -> low by strided 3x3 convs, low -> high by 1x1 conv and upsampling
        self.down3 = ConvBN(high, planes * 4, 3, 2)
        self.down4 = nn.Sequential(*ConvBN(high, planes * 4, 3, 2), nn.ReLU(inplace=True), *ConvBN(planes * 4, planes * 8, 3, 2))
        self.compress3 = ConvBN(planes * 4, high, 1)
        self.compress4 = ConvBN(planes * 8, high, 1)
        self.spp = DAPPM(planes * 16, spp_planes, planes * 4)
        self.head = SegHead(planes * 4, head_planes, num_classes)
        self.aux_weights = (0.4,) if aux else ()
        self.aux_heads = nn.ModuleList([SegHead(high, head_planes, num_classes)]) if aux else None
        init_weights(self)

    def _scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at 1/8 (N, C, H/8, W/8), before the final upsample, and the aux head's features."""
        x = self.layer1(self.stem(x))  # (N, 32, H/4, W/4)
        x = self.layer2(F.relu(x))  # (N, 64, H/8, W/8)
        eighth = x.shape[-2:]
        low = self.layer3(F.relu(x))  # (N, 128, H/16, W/16)
        high = self.layer3_(F.relu(x))  # (N, 64, H/8, W/8)
        low, high = low + self.down3(F.relu(high)), high + resize_to(self.compress3(F.relu(low)), eighth)
        after3 = high
        low = self.layer4(F.relu(low))  # (N, 256, H/32, W/32)
        high = self.layer4_(F.relu(high))
        low, high = low + self.down4(F.relu(high)), high + resize_to(self.compress4(F.relu(low)), eighth)
        high = self.layer5_(F.relu(high))  # (N, 128, H/8, W/8)
        context = resize_to(self.spp(self.layer5(F.relu(low))), eighth)  # from (N, 128, H/64, W/64)
        return self.head(high + context), after3

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        scores, after3 = self._scores(x)
        logits = resize_to(scores, size)
        if self.training and self.aux_heads is not None:
            return logits, [resize_to(self.aux_heads[0](after3), size)]
        return logits

    def forward_scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits at the input size, the same logits at 1/8 before their upsample)."""
        scores, _ = self._scores(x)
        return resize_to(scores, x.shape[-2:]), scores


@register_model
def ddrnet23_slim(*, num_classes: int = 19, aux: bool = False) -> DDRNet:
    """DDRNet-23-slim as in the paper (about 5.7M parameters for 19 classes)."""
    return DDRNet(num_classes, planes=32, spp_planes=128, head_planes=64, aux=aux)
