"""Masks that hold still on video: a running average of class probabilities, warped by optical flow.

A per-frame network flickers where it is unsure (a pixel on the road/sidewalk border changes
class from one frame to the next although nothing moved). A plain running average would calm
that but smear every moving car into a trail. :class:`TemporalFilter` instead carries its
average along the motion: each frame, the previous average is warped onto the current frame
with a dense optical flow (OpenCV DIS, computed on small gray images) and blended with the
frame's own probabilities, per pixel:

    S_t = (1 - a) * p_t + a * warp(S_{t-1}),   a = memory * match * (1 - confidence * margin_t)

``match`` (0..1) says how well the warp explains the current picture (photometric error between
the frame and the warped previous frame: ~0 where the flow is wrong, at occlusions and outside
the previous frame) and ``margin_t`` (0..1) is the frame's own confidence (top-1 minus top-2
probability): a confident frame, or one the history cannot explain, is taken as it is, so a
moving object's mask follows it within the frame and a new object shows at once.

It is stateful and must see the frames of one stream in order (one thread: a stage of its own,
never one of several post workers); :meth:`TemporalFilter.reset` forgets the past (a reconnect,
a seek, a jump in the frame index larger than ``max_gap``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from rtseg.errors import RtsegError

__all__ = ["TemporalConfig", "TemporalFilter", "PacketFilter", "parse_temporal", "resolve_temporal", "auto_off_reason", "DIS_PRESETS", "dis_flow", "flow_maps", "softmax"]

# OpenCV's three DIS presets (opencv/modules/video/src/dis_flow.cpp): finest scale, patch stride,
# gradient-descent and variational-refinement iterations. ULTRAFAST: scale 2, stride 4, 12, 0;
# FAST: 2, 4, 16, 5; MEDIUM: 1, 3, 25, 5.
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@dataclass(frozen=True)
class TemporalConfig:
    """How the filter weighs the past. ``match_error`` was picked among a few values on the CamVid
    clip (benchmarks/temporal.py); the others were set beforehand."""

    memory: float = 0.8  # history's weight where the warp matches and the frame is unsure, 0..1 (0 = off)
    match_error: float = 16.0  # gray levels (0..255): photometric error at which the history's weight falls to 1/e
    flow_side: int = 160  # px: longer side of the gray images the flow runs on (1/3 of a 480-wide frame)
    flow_preset: str = "ultrafast"  # DIS preset (DIS_PRESETS): 0.2-0.5 ms at 160x120 on one core
    max_gap: int = 3  # source frames: a larger jump of `index` between calls (or any step back) resets
    confidence: float = 1.0  # how far the frame's own confidence (top-1 - top-2) cuts the history's weight, 0..1
    logits: bool = True  # the scores are logits (softmaxed here); False: probabilities already
    auto: bool = False  # --temporal auto: on where it applies, dropped elsewhere (resolve_temporal)

    def __post_init__(self) -> None:
        if not 0.0 <= self.memory < 1.0:
            raise RtsegError(f"temporal memory must be in [0, 1); got {self.memory}")
        if self.match_error <= 0:
            raise RtsegError(f"temporal match_error must be > 0; got {self.match_error}")
        if not 0.0 <= self.confidence <= 1.0:
            raise RtsegError(f"temporal confidence must be in [0, 1]; got {self.confidence}")
        if self.flow_side < 16:
            raise RtsegError(f"temporal flow_side must be >= 16 px; got {self.flow_side}")
        if self.flow_preset not in DIS_PRESETS:
            raise RtsegError(f"temporal flow_preset must be one of {', '.join(DIS_PRESETS)}; got {self.flow_preset!r}")
        if self.max_gap < 1:
            raise RtsegError(f"temporal max_gap must be >= 1; got {self.max_gap}")


def parse_temporal(value: str | bool | TemporalConfig | None) -> TemporalConfig | None:
    """``--temporal auto|on|off`` (or True/False, or a config): the filter's config, None for off.
    auto gives a config marked ``auto``, which :func:`resolve_temporal` drops where it does not apply."""
    if value is None or isinstance(value, TemporalConfig):
        return value
    if isinstance(value, bool):
        return TemporalConfig() if value else None
    text = str(value).strip().lower()
    if text not in ("auto", "on", "off"):
        raise RtsegError(f"--temporal must be auto, on or off; got {value!r}")
    return None if text == "off" else TemporalConfig(auto=text == "auto")


def resolve_temporal(config: TemporalConfig | None, *, source: Any, engine: Any) -> TemporalConfig | None:
    """The filter a run gets: ``on`` as asked (an engine without scores is then an error, raised by
    the stages); ``auto`` on for a video file, camera or stream whose engine gives class scores,
    off otherwise (:func:`auto_off_reason` says why). The default of ``rtseg run`` and its siblings
    is auto: on the bundled clip with weights that never trained on it, it raised TC and mIoU alike
    (README, benchmarks/temporal.py)."""
    if config is None or not config.auto:
        return config
    return None if auto_off_reason(source=source, engine=engine) else replace(config, auto=False)


def auto_off_reason(*, source: Any, engine: Any) -> str | None:
    """Why ``--temporal auto`` leaves the filter off for this source and engine (None: it does not).
    Off for an image folder or glob (its pictures need not be a sequence), for an engine without
    scores (a TensorRT plan, an .onnx exported before the scores output), and for a model from
    another tool: its scores reach the filter at 1/8 of the input, coarser than the own ids of a
    model that predicts at 1/4 or full size, and the file does not say which kind it is (on a 1/8
    network exported as another tool would, ``on`` gave the same gain: benchmarks/temporal.py
    --as-foreign)."""
    if getattr(source, "image_suffix", None) is not None:
        return "image folders are not a sequence"
    if not getattr(engine, "has_scores", False):
        return "the engine gives no class scores"
    if str(getattr(getattr(engine, "meta", None), "model", "")).startswith("foreign:"):
        return "a model from another tool; --temporal on runs it"
    return None


def softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def gray_at(frame: np.ndarray, side: int) -> np.ndarray:
    """``frame`` (BGR (H, W, 3) or gray (H, W), uint8) as gray uint8 with its longer side at most
    ``side`` px (area-averaged: also what calms the sensor and compression noise). A frame four or
    more times larger is first halved (2x2 means, OpenCV's fast path) until it is not: OpenCV's
    area resize at a large non-integer factor costs about 8 ms on a 1024x2048 frame, the halvings
    and the last area step 1.7 ms, for gray levels within about 1 of the direct resize on average."""
    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    h, w = frame.shape[:2]
    while max(h, w) >= 4 * side and h % 2 == 0 and w % 2 == 0:
        h, w = h // 2, w // 2
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    scale = min(1.0, side / max(h, w))
    if scale < 1.0:
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return frame


def dis_flow(preset: str = "medium"):
    """A DIS optical-flow object (``cv2.DISOpticalFlow``); ``.calc(a, b, None)`` gives the flow F
    (float32 (h, w, 2), px) with a(x) ~ b(x + F(x)) for 8-bit gray a, b of one size."""
    return cv2.DISOpticalFlow_create(DIS_PRESETS[preset])


def flow_maps(flow: np.ndarray, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps (x, y; float32 (h, w)) that pull the second image of ``flow`` onto the
    first, on a grid of ``size`` (h, w) (the flow resized and its vectors rescaled) or the flow's own."""
    fh, fw = flow.shape[:2]
    h, w = size or (fh, fw)
    if (h, w) != (fh, fw):
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA if h < fh else cv2.INTER_LINEAR)
    map_x = flow[..., 0] * (w / fw) + np.arange(w, dtype=np.float32)[None, :]
    map_y = flow[..., 1] * (h / fh) + np.arange(h, dtype=np.float32)[:, None]
    return map_x, map_y


def inside(map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Where the maps land inside the source image (bool (h, w))."""
    h, w = map_x.shape
    return (map_x >= -0.5) & (map_x <= w - 0.5) & (map_y >= -0.5) & (map_y <= h - 0.5)


def upsample_argmax(values: np.ndarray, size: tuple[int, int], *, smallest: bool = False) -> np.ndarray:
    """argmax (``smallest``: argmin) over classes of ``values`` (float32 (h, w, C), >= 0)
    bilinearly resized to ``size`` (H, W), as uint8 (H, W). Resizes one class plane at a time and
    keeps a running max of the plane's bits with the class id in the low bits (non-negative
    float32 bits order as int32): about 2.5x cheaper than ``np.argmax`` over a resized (H, W, C) array."""
    h, w = values.shape[:2]
    classes = values.shape[2]
    if classes > 256:
        raise RtsegError(f"uint8 ids hold at most 256 classes; got {classes}")
    bits = max(1, (classes - 1).bit_length())
    keep = np.int32(~((1 << bits) - 1))
    pick = np.minimum if smallest else np.maximum
    best = None
    for c in range(classes):
        plane = np.ascontiguousarray(values[..., c])
        up = cv2.resize(plane, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) if (h, w) != size else plane.copy()
        key = up.view(np.int32)
        key &= keep
        key |= c
        best = key if best is None else pick(best, key, out=best)
    return (best & ((1 << bits) - 1)).astype(np.uint8)


def remap_channels(values: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """``cv2.remap`` (bilinear, edges replicated) of (h, w, C) ``values``, 4 channels a call:
    OpenCV 5 refuses (or crashes on) arrays of more than 128 channels (ADE20K has 150 classes)."""
    if values.shape[2] <= 4:
        out = cv2.remap(values, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out[..., None] if out.ndim == 2 else out  # remap drops a single channel's axis
    parts = [remap_channels(np.ascontiguousarray(values[..., c:c + 4]), map_x, map_y)
             for c in range(0, values.shape[2], 4)]
    return np.concatenate(parts, axis=2)


def top_margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per pixel of (h, w, C) ``probs`` (1 where C == 1)."""
    if probs.shape[2] == 1:
        return np.ones(probs.shape[:2], np.float32)
    top2 = np.partition(probs, probs.shape[2] - 2, axis=2)[..., -2:]
    return top2[..., 1] - top2[..., 0]


class TemporalFilter:
    """``filter(frame, scores, size=..., index=...)`` -> uint8 ids (H, W) at ``size``, one call per
    frame of one stream, in order. ``frame``: the frame as read (BGR (H, W, 3) uint8, any size) or
    its gray version; ``scores``: the network's class scores (C, h, w) float at the network's own
    output resolution (e.g. 1/8 of the inference size); ``size``: the inference size (H, W) the
    ids come out at (default: the frame's). Not thread-safe."""

    def __init__(self, config: TemporalConfig | None = None):
        self.config = config or TemporalConfig()
        self._dis = dis_flow(self.config.flow_preset)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next frame is taken as it is (a reconnect, a seek, a gap)."""
        self._probs: np.ndarray | None = None  # float32 (h, w, C): the running average
        self._gray: np.ndarray | None = None  # uint8: the previous frame at the flow's size
        self._index: int | None = None

    @property
    def primed(self) -> bool:
        """Whether a frame has been seen since the start or the last reset."""
        return self._probs is not None

    def __call__(self, frame: np.ndarray, scores: np.ndarray, *, size: tuple[int, int] | None = None,
                 index: int | None = None) -> np.ndarray:
        cfg = self.config
        if scores.ndim != 3:
            raise RtsegError(f"scores must be (classes, h, w); got shape {scores.shape}")
        probs = np.ascontiguousarray(scores.transpose(1, 2, 0), dtype=np.float32)  # (h, w, C)
        if cfg.logits:
            probs = softmax(probs)
        gray = gray_at(frame, cfg.flow_side) if cfg.memory > 0 else None
        if self._gap(index) or (self._probs is not None and (self._probs.shape != probs.shape
                                                              or self._gray.shape != gray.shape)):
            self.reset()
        if self._probs is not None:
            probs = self._blend(probs, gray)
        if cfg.memory > 0:
            self._probs, self._gray = probs, gray
        self._index = index
        self.last_probs = probs  # (h, w, C): this frame's filtered probabilities (kept by PacketFilter when asked)
        # Enlarged as -log p, not p: closer to the network's own ids (its logits are enlarged), which
        # on the CamVid clip are more accurate and steadier than enlarged probabilities.
        return upsample_argmax(-np.log(np.maximum(probs, 1e-12)), tuple(size or frame.shape[:2]), smallest=True)

    def _gap(self, index: int | None) -> bool:
        if index is None or self._index is None:
            return False
        return not 0 < index - self._index <= self.config.max_gap

    def _blend(self, probs: np.ndarray, gray: np.ndarray) -> np.ndarray:
        """(1 - a) * probs + a * (the running average warped onto this frame), a per pixel."""
        cfg = self.config
        flow = self._dis.calc(gray, self._gray, None)  # gray(x) ~ previous(x + flow(x))
        fx, fy = flow_maps(flow)
        warped_gray = cv2.remap(self._gray, fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        error = cv2.absdiff(gray, warped_gray).astype(np.float32)
        error[~inside(fx, fy)] = 255.0  # no history outside the previous frame
        h, w = probs.shape[:2]
        error = cv2.resize(error, (w, h), interpolation=cv2.INTER_AREA)  # mean error over each score pixel
        match = np.exp(-np.square(error / cfg.match_error))
        mx, my = flow_maps(flow, (h, w))
        history = remap_channels(self._probs, mx, my)
        margin = top_margin(probs)
        a = (cfg.memory * match * (1.0 - cfg.confidence * margin))[..., None].astype(np.float32)
        return probs + a * (history - probs)  # both sum to 1 over classes, so the blend does too


class PacketFilter:
    """The pipeline's temporal stage for one stream (rtseg.pipeline.runner.engine_stages):
    ``__call__(packet)`` replaces ``packet.ids`` (inference size) by the filter's, from
    ``packet.scores``, and drops the scores. The filter's index is the source's own frame number
    (``packet.source_index``), so frames skipped by --stride or dropped by a live source show as
    gaps (a gap over ``max_gap`` resets it); a new connection of a live source (``packet.epoch``)
    resets it too. Nothing is kept before the first frame. One thread, packets in order."""

    def __init__(self, config: TemporalConfig | None = None, *, keep: bool = False):
        self.filter = TemporalFilter(config)
        self._epoch: int | None = None
        self.keep = keep  # leave the filtered probabilities on the packet (confidence outputs)

    def __call__(self, packet) -> None:
        if packet.epoch != self._epoch:
            self.filter.reset()
            self._epoch = packet.epoch
        index = packet.source_index if packet.source_index is not None else packet.index
        packet.ids = self.filter(packet.frame, packet.scores, size=packet.ids.shape, index=index)
        packet.scores = None
        if self.keep:
            packet.probs = self.filter.last_probs
