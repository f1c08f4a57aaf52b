"""The network as engines and exports run it: raw frames in, class ids out.

Folding the host's work into the graph is what makes the pipeline cheap: the host only
resizes uint8 frames; the uint8->float cast, BGR->RGB swap and mean/std normalisation run
inside the network (one 1x1 conv), and so does the argmax, so only uint8 ids come back
(1/19 of the logits' bytes; 4x less again than int64).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rtseg.meta import ModelMeta

__all__ = ["DeployModel", "normalisation_conv"]


def normalisation_conv(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (3, 3, 1, 1) and bias (3,) of a 1x1 conv that maps BGR 0..255 to normalised RGB:
    out[c] = (in[2 - c] / 255 - mean[c]) / std[c]."""
    weight = torch.zeros(3, 3, 1, 1)
    for c in range(3):
        weight[c, 2 - c, 0, 0] = 1.0 / (255.0 * std[c])
    bias = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32)
    return weight, bias


class DeployModel(nn.Module):
    """``forward(images)``: uint8 (N, H, W, 3) BGR -> uint8 (N, H, W) class ids at the same size
    (``output="ids"``), or float logits (N, C, H, W) (``output="logits"``)."""

    def __init__(self, net: nn.Module, meta: ModelMeta, *, output: str = "ids"):
        super().__init__()
        if output not in ("ids", "logits"):
            raise ValueError(f"output must be 'ids' or 'logits', got {output!r}")
        self.net = net.eval()
        self.output = output
        weight, bias = normalisation_conv(meta.mean, meta.std)
        self.register_buffer("norm_weight", weight)
        self.register_buffer("norm_bias", bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(self.norm_weight.dtype)  # NHWC uint8 -> NCHW float (channels-last strides)
        x = F.conv2d(x, self.norm_weight, self.norm_bias)
        logits = self.net(x)
        if self.output == "logits":
            return logits
        return logits.argmax(dim=1).to(torch.uint8)
