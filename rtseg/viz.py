"""Colouring class ids and blending them over frames, with cv2.LUT rather than numpy fancy
indexing (about 5 ms instead of 45 ms per 1024x2048 frame)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["palette_lut", "colorize", "overlay", "VIEWS", "compose", "resize_nearest"]

VIEWS = ("overlay", "mask", "side-by-side")


def resize_nearest(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize to ``size`` (h, w) with pixel centres aligned (INTER_NEAREST_EXACT,
    as the image resize and the training labels are). For a whole-number enlargement (512x1024 ->
    1024x2048) plain INTER_NEAREST picks the very same pixels and is about 1.5x faster."""
    h, w = size
    ih, iw = image.shape[:2]
    whole = h % ih == 0 and w % iw == 0
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST if whole else cv2.INTER_NEAREST_EXACT)


def palette_lut(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(256, 1, 3) BGR lookup table; ids beyond the palette are black."""
    lut = np.zeros((256, 1, 3), np.uint8)
    for i, (r, g, b) in enumerate(palette[:256]):
        lut[i, 0] = (b, g, r)
    return lut


def colorize(ids: np.ndarray, palette: Sequence[Sequence[int]] | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint8 ids -> (H, W, 3) BGR colours. ``palette`` is RGB triples or a LUT from palette_lut."""
    lut = palette if isinstance(palette, np.ndarray) and palette.shape == (256, 1, 3) else palette_lut(palette)
    three = cv2.merge((ids, ids, ids))
    return cv2.LUT(three, lut, dst=out)


def overlay(frame: np.ndarray, colors: np.ndarray, alpha: float, out: np.ndarray | None = None) -> np.ndarray:
    """Blend: (1 - alpha) * frame + alpha * colors."""
    return cv2.addWeighted(frame, 1.0 - alpha, colors, alpha, 0.0, dst=out)


def compose(frame: np.ndarray, ids: np.ndarray, lut: np.ndarray, view: str, alpha: float) -> np.ndarray:
    """The picture a sink writes for ``view``: overlay (frame size), mask (frame size) or
    side-by-side (frame | overlay, twice as wide).

    ``ids`` may be at the frame's size or smaller (the inference size): smaller ids are coloured
    at their own size and the colours enlarged with nearest neighbour, which gives the very
    pixels colouring the enlarged ids would, but sends 4x fewer pixels through the LUT at
    512x1024 -> 1024x2048 (the 3-channel LUT is the dearest step of this function).
    """
    colors = colorize(ids, lut)
    fh, fw = frame.shape[:2]
    if colors.shape[:2] != (fh, fw):
        colors = resize_nearest(colors, (fh, fw))
    if view == "mask":
        return colors
    blended = overlay(frame, colors, alpha)
    if view == "overlay":
        return blended
    if view == "side-by-side":
        return np.concatenate([frame, blended], axis=1)
    raise ValueError(f"unknown view {view!r}; use one of {VIEWS}")
