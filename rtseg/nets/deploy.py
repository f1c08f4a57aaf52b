"""The network as engines and exports run it: raw frames in, class ids out.

Folding the host's work into the graph is what makes the pipeline cheap: the host only
resizes uint8 frames; the uint8->float cast, BGR->RGB swap and mean/std normalisation run
inside the network (one 1x1 conv), and so does the argmax, so only uint8 ids come back
(1/19 of the logits' bytes; 4x less again than int64).

With ``scores=True`` a second output carries the class scores at the network's own output
resolution (the logits before their final upsample, 1/8 of the input for Fast-SCNN, BiSeNetV2 and
DDRNet; a full-size-output net's logits average-pooled by 8), in fp16: what the temporal filter
(rtseg/pipeline/temporal.py) blends, for C/64 of the ids' bytes again.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from rtseg.meta import ModelMeta

__all__ = ["DeployModel", "normalisation_conv", "net_scores", "SCORE_STRIDE"]

SCORE_STRIDE = 8  # px: the scores of a net without its own low-resolution logits are pooled by this


def normalisation_conv(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (3, 3, 1, 1) and bias (3,) of a 1x1 conv that maps BGR 0..255 to normalised RGB:
    out[c] = (in[2 - c] / 255 - mean[c]) / std[c]."""
    weight = torch.zeros(3, 3, 1, 1)
    for c in range(3):
        weight[c, 2 - c, 0, 0] = 1.0 / (255.0 * std[c])
    bias = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32)
    return weight, bias


def net_scores(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, C, H, W) at the input size, class scores at the net's own output resolution):
    the net's ``forward_scores`` where it has one, else its logits and those average-pooled by
    :data:`SCORE_STRIDE` (a net that outputs at full size, e.g. U-Net)."""
    if hasattr(net, "forward_scores"):
        return net.forward_scores(x)
    logits = net(x)
    return logits, F.avg_pool2d(logits, SCORE_STRIDE, ceil_mode=True)


class DeployModel(nn.Module):
    """``forward(images)``: uint8 (N, H, W, 3) BGR -> uint8 (N, H, W) class ids at the same size
    (``output="ids"``), or float logits (N, C, H, W) (``output="logits"``). ``scores=True`` (ids
    only): ``(ids, scores)``, scores fp16 (N, C, h, w) at the network's own resolution (:func:`net_scores`)."""

    def __init__(self, net: nn.Module, meta: ModelMeta, *, output: str = "ids", scores: bool = False):
        super().__init__()
        if output not in ("ids", "logits"):
            raise ValueError(f"output must be 'ids' or 'logits', got {output!r}")
        if scores and output != "ids":
            raise ValueError("scores=True goes with output='ids'")
        self.net = net.eval()
        self.output = output
        self.scores = scores
        weight, bias = normalisation_conv(meta.mean, meta.std)
        self.register_buffer("norm_weight", weight)
        self.register_buffer("norm_bias", bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).to(self.norm_weight.dtype)  # NHWC uint8 -> NCHW float (channels-last strides)
        x = F.conv2d(x, self.norm_weight, self.norm_bias)
        if self.scores:
            logits, scores = net_scores(self.net, x)
            return logits.argmax(dim=1).to(torch.uint8), scores.to(torch.float16)
        logits = self.net(x)
        if self.output == "logits":
            return logits
        return logits.argmax(dim=1).to(torch.uint8)
