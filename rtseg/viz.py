"""Colouring class ids and blending them over frames (cv2.LUT: several times faster than numpy
fancy indexing), and :func:`draw`, the one function that makes the picture a run shows: colours,
then the legend."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["palette_lut", "colorize", "overlay", "VIEWS", "compose", "resize_nearest", "yuv_luts", "i420_planes",
           "compose_i420", "i420_to_bgr", "Legend", "draw", "classes_table"]

VIEWS = ("overlay", "mask", "side-by-side")  # the views of the class ids (compose draws them; the window's m cycles them)
ALL_VIEWS = (*VIEWS, "confidence")  # and the top class's probability as a heat map (the post stage draws it)


def resize_nearest(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize to ``size`` (h, w) with pixel centres aligned (INTER_NEAREST_EXACT,
    as the image resize and the training labels are). For a whole-number enlargement (512x1024 ->
    1024x2048) plain INTER_NEAREST picks the very same pixels, faster."""
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


def confidence_palette() -> tuple[tuple[int, int, int], ...]:
    """256 RGB colours for confidence 0..255: OpenCV's inferno map (dark purple: unsure; yellow: sure)."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0]
    return tuple((int(c[2]), int(c[1]), int(c[0])) for c in bgr)


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


# --- The same pictures in I420 (planar YUV 4:2:0), the format H.264 encodes -------------------
#
# The video writer converts every BGR picture to I420 before encoding it. Drawing the overlay
# in I420 directly moves that conversion onto the frame (one conversion either way) and makes
# the rest cheaper: 1.5 bytes a pixel to colour and blend instead of 3, and for a 1024x2048
# frame the chroma planes are 512x1024, the inference size, so half the colouring needs no
# enlargement at all. Colour conversion is affine, so blending in YUV is blending in BGR, up
# to rounding (timings: benchmarks/host_shortcuts.py).


def yuv_luts(palette: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three (256,) uint8 lookup tables, class id -> Y, U, V of its palette colour, by OpenCV's
    own BGR -> I420 conversion (so the colours match what the writer would have made)."""
    bgr = palette_lut(palette)[:, 0]  # (256, 3)
    tiles = np.repeat(np.repeat(bgr[:, None, None, :], 2, 1), 2, 2).reshape(256 * 2, 2, 3)  # a 2x2 tile per id
    yuv = cv2.cvtColor(tiles, cv2.COLOR_BGR2YUV_I420)  # (768, 2): Y (512, 2), U (128, 2), V (128, 2)
    y = yuv[:512:2, 0].copy()
    u = yuv[512:640].reshape(-1).copy()
    v = yuv[640:].reshape(-1).copy()
    return y, u, v


def i420_planes(buf: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (h, w), U and V (h/2, w/2) planes of an (h * 3/2, w) I420 buffer."""
    chroma = buf[h:].reshape(-1)
    q = (h // 2) * (w // 2)
    return buf[:h], chroma[:q].reshape(h // 2, w // 2), chroma[q:].reshape(h // 2, w // 2)


def i420_to_bgr(buf: np.ndarray) -> np.ndarray:
    """(h * 3/2, w) I420 -> (h, w, 3) BGR."""
    return cv2.cvtColor(buf, cv2.COLOR_YUV2BGR_I420)


def compose_i420(frame: np.ndarray, ids: np.ndarray, luts: tuple[np.ndarray, np.ndarray, np.ndarray], view: str,
                 alpha: float) -> np.ndarray:
    """``compose`` drawn in I420: an (H * 3/2, W') uint8 buffer, W' = W or 2W (side-by-side).
    ``frame`` is BGR with even sides; ``ids`` at its size or smaller; ``luts`` from yuv_luts."""
    fh, fw = frame.shape[:2]
    if fh % 2 or fw % 2:
        raise ValueError(f"I420 needs even frame sides; got {fw}x{fh}")
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; use one of {VIEWS}")
    chroma_ids = ids if ids.shape == (fh // 2, fw // 2) else resize_nearest(ids, (fh // 2, fw // 2))
    colours = (cv2.LUT(ids, luts[0]), cv2.LUT(chroma_ids, luts[1]), cv2.LUT(chroma_ids, luts[2]))
    if colours[0].shape != (fh, fw):
        colours = (resize_nearest(colours[0], (fh, fw)), *colours[1:])
    if view == "mask":
        out = np.empty((fh * 3 // 2, fw), np.uint8)
        for plane, colour in zip(i420_planes(out, fh, fw), colours):
            plane[...] = colour
        return out
    source = i420_planes(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), fh, fw)
    width = fw if view == "overlay" else 2 * fw
    out = np.empty((fh * 3 // 2, width), np.uint8)
    for plane, src, colour in zip(i420_planes(out, fh, width), source, colours):
        if view == "overlay":
            cv2.addWeighted(src, 1.0 - alpha, colour, alpha, 0.0, dst=plane)
        else:  # side-by-side: the frame on the left, the overlay on the right
            half = src.shape[1]
            plane[:, :half] = src
            plane[:, half:] = cv2.addWeighted(src, 1.0 - alpha, colour, alpha, 0.0)
    return out


# --- The legend: which colour is which class ----------------------------------------------------


class Legend:
    """The class colours with their names, in a translucent panel at the top left of the
    overlay (over the right half in side-by-side), so the picture alone says which colour is
    which class. Every class when they fit in 90% of the frame's height (CamVid's 11, Cityscapes'
    19), else the classes present in the frame. Panels are drawn once and reused; drawing one on
    a frame is a blend of its small rectangle."""

    def __init__(self, class_names: Sequence[str], palette: Sequence[Sequence[int]]):
        self.names = list(class_names)
        self.colours = [tuple(int(c) for c in palette[i]) if i < len(palette) else (0, 0, 0)
                        for i in range(len(self.names))]
        self._panels: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._i420: dict[tuple, tuple] = {}  # panels in I420, for pictures drawn in it (_i420_panel)

    @staticmethod
    def _row(frame_h: int) -> int:
        # pixels per class row: 16 on a 360-line frame (11 CamVid rows fit in half of it), 36 from 864 lines
        return int(np.clip(round(frame_h / 24), 16, 36))

    def fits(self, frame_h: int) -> int:
        """How many class rows fit on a frame ``frame_h`` high."""
        return max(1, int(0.9 * frame_h) // self._row(frame_h) - 1)

    def panel(self, frame_h: int, classes: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(BGR panel (h, w, 3) uint8, alpha (h, w) float32) for frames ``frame_h`` high, listing
        ``classes`` (default: all); even sides."""
        key = (frame_h, tuple(classes) if classes is not None else None)
        panel = self._panels.get(key)  # one lookup, no check-then-read: post workers share this cache
        if panel is None:
            if len(self._panels) > 64:  # present-class panels vary: keep the cache small
                self._panels.clear()
            panel = self._make(frame_h, list(classes) if classes is not None else list(range(len(self.names))))
            self._panels[key] = panel
        return panel

    def _make(self, frame_h: int, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
        row = self._row(frame_h)
        pad = max(2, row // 4)
        scale = 0.68 * row / 22  # FONT_HERSHEY_SIMPLEX is about 22 px tall at scale 1: letters ~2/3 of a row
        thick = 1 if row < 24 else 2
        names = [self.names[c] for c in classes] or [""]
        text_w = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] for n in names)
        sw = row - 2 * pad // 2  # swatch side
        w = pad + sw + pad + text_w + pad
        h = 2 * pad + row * len(classes)
        w, h = w + w % 2, h + h % 2
        img = np.zeros((h, w, 3), np.uint8)
        alpha = np.full((h, w), 0.6, np.float32)  # a dark, see-through background
        outline = np.zeros((h, w), np.uint8)
        for i, (name, (r, g, b)) in enumerate(zip(names, (self.colours[c] for c in classes))):
            y = pad + i * row
            y0, y1 = y + (row - sw) // 2, y + (row - sw) // 2 + sw
            img[y0:y1, pad:pad + sw] = (b, g, r)
            alpha[y0:y1, pad:pad + sw] = 1.0
            base = (pad + sw + pad, y + (row + int(16 * scale)) // 2)
            # a black outline under white letters: legible over any colour the panel lets through
            cv2.putText(img, name, base, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.putText(img, name, base, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
            cv2.putText(outline, name, base, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick + 2, cv2.LINE_AA)
        ink = np.maximum(img.max(axis=2), outline).astype(np.float32) / 255  # letters, outline, swatches opaque
        return img, np.maximum(alpha, ink)

    def _place(self, picture_h: int, picture_w: int, frame_w: int, panel_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """(y, x, h, w) of the panel in the picture, clipped to it; even y and x."""
        margin = max(4, picture_h // 60) // 2 * 2
        x = margin + (frame_w if picture_w >= 2 * frame_w else 0)  # side-by-side: over the overlay
        h, w = min(panel_hw[0], picture_h - margin), min(panel_hw[1], picture_w - x)
        return margin, x, max(0, h - h % 2), max(0, w - w % 2)

    def draw(self, picture: np.ndarray, fmt: str, frame_hw: tuple[int, int], ids: np.ndarray | None = None) -> None:
        """Blend the legend into ``picture`` in place: ``fmt`` "bgr" (H, W', 3) or "i420" (H * 3/2, W').
        ``ids`` (any size) choose the classes shown when not all of them fit."""
        fh, fw = frame_hw
        classes = None
        if len(self.names) > self.fits(fh):
            present = np.flatnonzero(np.bincount(ids.ravel(), minlength=len(self.names))[:len(self.names)]) if ids is not None else []
            classes = [int(c) for c in present][: self.fits(fh)]
        img, alpha = self.panel(fh, classes)
        if fmt == "bgr":
            y, x, h, w = self._place(picture.shape[0], picture.shape[1], fw, img.shape[:2])
            if h and w:
                a = alpha[:h, :w, None]
                region = picture[y:y + h, x:x + w]
                region[...] = (region * (1 - a) + img[:h, :w] * a + 0.5).astype(np.uint8)
            return
        y, x, h, w = self._place(fh, picture.shape[1], fw, img.shape[:2])
        if not (h and w):
            return
        planes = i420_planes(picture, fh, picture.shape[1])
        for k, (plane, part, a, rest) in enumerate(zip(planes, *self._i420_panel(img, alpha, h, w))):
            ys, xs = (y, x) if k == 0 else (y // 2, x // 2)
            region = plane[ys:ys + part.shape[0], xs:xs + part.shape[1]]
            cv2.blendLinear(region, part, rest, a, dst=region)  # region * (1 - a) + part * a, rounded

    def _i420_panel(self, img: np.ndarray, alpha: np.ndarray, h: int, w: int) -> tuple[list, list, list]:
        """The panel's top-left h x w in I420 planes, with each plane's alpha and 1 - alpha (float32),
        made once per panel and size (they are drawn on every frame)."""
        key = (id(img), h, w)
        made = self._i420.get(key)
        if made is None or made[0] is not img:
            planes = [np.ascontiguousarray(p) for p in
                      i420_planes(cv2.cvtColor(np.ascontiguousarray(img[:h, :w]), cv2.COLOR_BGR2YUV_I420), h, w)]
            alphas = [np.ascontiguousarray(alpha[:h, :w], np.float32)] + \
                     [np.ascontiguousarray(alpha[:h:2, :w:2], np.float32)] * 2
            if len(self._i420) > 64:
                self._i420.clear()
            made = (img, planes, alphas, [1 - a for a in alphas])
            self._i420[key] = made  # keeps img alive, so its id is not reused while the entry is here
        return made[1], made[2], made[3]


def draw(frame: np.ndarray, ids: np.ndarray, view: str, alpha: float, *, lut: np.ndarray,
         legend: Legend | None = None, luts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
         ) -> tuple[np.ndarray, str]:
    """The picture a run shows for ``frame`` and its class ``ids`` (at the frame's size or the
    inference size): ``view`` with ``alpha``, then ``legend`` over it (None: no legend).
    Returns (picture, format): "i420" when ``luts`` (from :func:`yuv_luts`) are given and the
    frame's sides are even, else "bgr" (drawn with ``lut`` from :func:`palette_lut`)."""
    h, w = frame.shape[:2]
    if luts is not None and h % 2 == 0 and w % 2 == 0:
        picture, fmt = compose_i420(frame, ids, luts, view, alpha), "i420"
    else:
        picture, fmt = compose(frame, ids, lut, view, alpha), "bgr"
    if legend is not None:
        legend.draw(picture, fmt, (h, w), ids)
    return picture, fmt


def classes_table(class_names: Sequence[str], palette: Sequence[Sequence[int]], ignore_index: int = 255) -> dict:
    """What ``--masks`` writes beside the PNGs as classes.json: each id's name and colour, said
    both ways (RGB as in the palette, BGR as OpenCV draws it), and the ignore id."""
    return {"ids": "each mask pixel's value is the class id below (uint8 PNG)",
            "classes": [{"id": i, "name": n, "rgb": list(palette[i]), "bgr": list(palette[i])[::-1]}
                        for i, n in enumerate(class_names)],
            "ignore_index": ignore_index}
