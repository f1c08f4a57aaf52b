"""U-Net: the classic encoder-decoder with skip connections.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015, arXiv:1505.04597.

Four times (two 3x3 convs, 2x2 max pool) down to 1/16, two 3x3 convs, then four times (2x2
up-convolution halving the channels, concatenation with the encoder's map of the same size, two
3x3 convs) back to full size, and a 1x1 conv to class logits. ``width`` is the first stage's
channel count, doubled at each level: 64 is the paper's (about 31M parameters), 32 (about 7.8M,
a quarter of the compute) is rtseg's default. As in the street-scene ports of U-Net, the convs
are padded and followed by BatchNorm (the paper's valid convs and output crop predate BatchNorm
and would not return logits at input size). U-Net has no auxiliary heads.

Every input size works: pooling rounds up (``ceil_mode``), and each up-convolution's output,
which may then be one pixel larger than the skip it joins, is cropped to the skip's size taken
from the tensor (a slice, which exports).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from rtseg.errors import RtsegError
from rtseg.nets.layers import ConvBNReLU, init_weights
from rtseg.nets.registry import register_model

__all__ = ["UNet", "unet"]


class DoubleConv(nn.Sequential):
    """Two 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__(ConvBNReLU(cin, cout), ConvBNReLU(cout, cout))


class Down(nn.Sequential):
    """2x2 max pool (rounding up, so no pixel is dropped), then two 3x3 convs."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.MaxPool2d(2, 2, ceil_mode=True), DoubleConv(cin, cout))


class Up(nn.Module):
    """2x2 up-convolution halving the channels, crop to the skip's size, concatenate, two 3x3 convs."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, 2)
        self.conv = DoubleConv(cout * 2, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)[..., : skip.shape[-2], : skip.shape[-1]]
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net. ``forward`` returns logits (N, num_classes, H, W) at the input size."""

    def __init__(self, num_classes: int = 19, *, width: int = 32):
        super().__init__()
        self.num_classes = num_classes
        w = [width * 2 ** i for i in range(5)]  # 32, 64, 128, 256, 512 for width 32
        self.inc = DoubleConv(3, w[0])
        self.downs = nn.ModuleList(Down(w[i], w[i + 1]) for i in range(4))
        self.ups = nn.ModuleList(Up(w[i + 1], w[i]) for i in reversed(range(4)))
        self.classifier = nn.Conv2d(w[0], num_classes, 1)
        self.aux_weights: tuple[float, ...] = ()
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]  # full size
        for down in self.downs:
            skips.append(down(skips[-1]))  # 1/2, 1/4, 1/8, 1/16
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.classifier(x)


@register_model
def unet(*, num_classes: int = 19, width: int = 32, aux: bool = False) -> UNet:
    """U-Net with first-stage width ``width`` (32 by default; 64 is the paper's). ``aux`` is
    accepted for a uniform interface: U-Net has no auxiliary heads."""
    if width < 1:
        raise RtsegError(f"U-Net width must be >= 1, got {width}")
    return UNet(num_classes, width=width)
