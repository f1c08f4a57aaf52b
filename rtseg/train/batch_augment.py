"""Augmentation of whole batches of tensors, on the GPU (or the CPU, where CI tests it).

The same random scale, pad-and-crop, flip and colour jitter as :func:`rtseg.train.transforms.augment`
does frame by frame with OpenCV, but as one ``affine_grid`` + ``grid_sample`` per batch: each
output pixel of a crop is mapped back to its source pixel. Images are sampled bilinearly and
labels by nearest neighbour on the same grid, so what moves the image moves the label; pixels
that fall outside the (scaled) frame are black in the image and the ignore id in the label,
as the per-frame path pads them. The random draws come from a CPU ``torch.Generator`` for a
whole epoch at once (one small upload per epoch), so a run is the same on CPU and GPU and
``--resume`` replays it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtseg.meta import IMAGENET_MEAN, IMAGENET_STD
from rtseg.train.transforms import AugmentConfig

__all__ = ["AugmentDraws", "draw_params", "augment_batch", "normalise"]


@dataclass
class AugmentDraws:
    """One sample's worth of random choices per row (all 1-D, length N)."""
    out_h: torch.Tensor  # int64: the scaled frame's height, round(H * s)
    out_w: torch.Tensor  # int64: the scaled frame's width
    y0: torch.Tensor  # int64: the crop's top row in the scaled frame
    x0: torch.Tensor  # int64: the crop's left column in the scaled frame
    flip: torch.Tensor  # bool: mirror horizontally
    jitter: torch.Tensor  # float (N, 3): brightness, contrast, saturation factors

    def to(self, device: torch.device | str) -> "AugmentDraws":
        return AugmentDraws(**{k: v.to(device, non_blocking=True) for k, v in vars(self).items()})

    def __getitem__(self, idx) -> "AugmentDraws":
        return AugmentDraws(**{k: v[idx] for k, v in vars(self).items()})


def draw_params(n: int, size: tuple[int, int], cfg: AugmentConfig, generator: torch.Generator) -> AugmentDraws:
    """Random choices for ``n`` samples of frames ``size`` = (H, W), as ``augment`` makes them:
    scale uniform in cfg.scale, crop offset uniform over the valid positions (0 when the scaled
    frame is smaller than the crop: it is padded at the bottom and right), flip with p = 0.5,
    each jitter factor uniform in [1 - j, 1 + j]."""
    h, w = size
    ch, cw = cfg.crop
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    s = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[:, 0]
    out_h = torch.round(h * s).clamp(min=1).long()
    out_w = torch.round(w * s).clamp(min=1).long()
    y0 = torch.floor(u[:, 1] * ((out_h - ch).clamp(min=0) + 1)).long()
    x0 = torch.floor(u[:, 2] * ((out_w - cw).clamp(min=0) + 1)).long()
    flip = (u[:, 3] < 0.5) if cfg.flip else torch.zeros(n, dtype=torch.bool)
    j = cfg.jitter
    jitter = 1 - j + 2 * j * torch.rand(n, 3, generator=generator, dtype=torch.float64) if j > 0 else torch.ones(n, 3, dtype=torch.float64)
    return AugmentDraws(out_h, out_w, y0, x0, flip, jitter.float())


def _grid(d: AugmentDraws, size: tuple[int, int], crop: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Sampling grid (N, ch, cw, 2) in ``grid_sample``'s normalised source coordinates.

    Crop pixel j (centre j + 0.5) sits at x0 + j + 0.5 in the frame scaled to out_w, that is at
    (x0 + j + 0.5) * W / out_w in the source: with u = 2 (j + 0.5) / cw - 1 the source's
    normalised x is u * cw / out_w + (2 x0 + cw) / out_w - 1 (align_corners=False). A flip
    mirrors u."""
    ch, cw = crop
    oh, ow = d.out_h.double(), d.out_w.double()
    sign = torch.where(d.flip, -1.0, 1.0).double()
    theta = torch.zeros(len(oh), 2, 3, dtype=torch.float64, device=oh.device)
    theta[:, 0, 0] = sign * cw / ow
    theta[:, 0, 2] = (2 * d.x0.double() + cw) / ow - 1
    theta[:, 1, 1] = ch / oh
    theta[:, 1, 2] = (2 * d.y0.double() + ch) / oh - 1
    return F.affine_grid(theta.float().to(device), [len(oh), 1, ch, cw], align_corners=False)


def _jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Saturation, contrast, then brightness on float pixels 0..255 (N, 3, h, w), per sample,
    as ``transforms.color_jitter`` does."""
    b, c, s = (factors[:, i].view(-1, 1, 1, 1) for i in range(3))
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * s
    m = x.mean((1, 2, 3), keepdim=True)
    x = (x - m) * c + m
    return (x * b).clamp_(0, 255)


def normalise(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Float RGB pixels 0..255 (N, 3, h, w) -> the network's normalised input."""
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) * 255
    return (x - m) / s


@torch.no_grad()
def augment_batch(images: torch.Tensor, labels: torch.Tensor, draws: AugmentDraws, cfg: AugmentConfig,
                  ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB images (N, 3, H, W) and uint8 labels (N, H, W), on any device ->
    (normalised float images (N, 3, ch, cw), channels-last; int64 labels (N, ch, cw)).
    ``draws`` holds N samples' choices (:func:`draw_params`), on the same device or the CPU."""
    size = tuple(images.shape[-2:])
    grid = _grid(draws.to(images.device), size, cfg.crop, images.device)
    x = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Labels shifted by one so that the zero padding marks "outside": 0 -> ignore, k + 1 -> k.
    y = F.grid_sample(labels[:, None].float() + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    y = y[:, 0].round_().long() - 1
    y = torch.where(y < 0, torch.full_like(y, ignore_index), y)
    if cfg.jitter > 0:
        x = _jitter(x, draws.jitter.to(x.device))
    return normalise(x).contiguous(memory_format=torch.channels_last), y
