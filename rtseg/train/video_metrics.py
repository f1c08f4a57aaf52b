"""How much a video's masks flicker: temporal consistency (TC) and flip rate, and mIoU where labelled.

TC as in Liu et al., "Efficient Semantic Video Segmentation with Per-frame Inference" (ECCV
2020): the mIoU between the prediction of frame t and the prediction of frame t+1 warped back
onto frame t with the optical flow between the two frames. A network that is right on every
frame scores 1; flicker (and flow errors) lower it. The flip rate is the fraction of pixels whose
class differs between the two. The flow is OpenCV's DIS, preset MEDIUM (the figures of the
issue that asked for this were measured so), on the frames resized to the predictions' size.
Both are pooled over the clip: one confusion matrix over every pair of consecutive frames.
"""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from rtseg.pipeline.temporal import dis_flow, flow_maps, gray_at, inside
from rtseg.train.metrics import ConfusionMatrix
from rtseg.viz import resize_nearest

__all__ = ["TemporalConsistency", "VideoScore", "video_metrics", "FLOW_PRESET"]

FLOW_PRESET = "medium"  # DIS preset of the metric (finest scale 1, 25 gradient steps, 5 refinements)
_ALL_IDS = 256  # uint8 ids: TC's matrix spans every possible class, absent ones drop out of the mean


class TemporalConsistency:
    """Feed ``update(frame, ids)`` the frames of one clip in order; ``compute()`` gives TC (mIoU
    between consecutive predictions, motion compensated) and the flip rate. ``frame``: BGR
    (H, W, 3) or gray uint8, any size; ``ids``: uint8 (h, w) class ids."""

    def __init__(self, preset: str = FLOW_PRESET):
        self._dis = dis_flow(preset)
        self._pairs = ConfusionMatrix(_ALL_IDS, ignore_index=_ALL_IDS)  # nothing ignored
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._changed = 0
        self._compared = 0
        self.frames = 0
        self.per_pair: list[tuple[float, float]] = []  # (TC, flip rate) of each pair of consecutive frames

    def reset(self) -> None:
        """Start a new clip (what was pooled so far stays)."""
        self._prev = None

    def update(self, frame: np.ndarray, ids: np.ndarray) -> None:
        h, w = ids.shape
        gray = gray_at(frame, max(h, w))
        if gray.shape != (h, w):  # a frame whose aspect differs from the ids': squeeze it to them
            gray = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
        self.frames += 1
        if self._prev is not None and self._prev[1].shape == ids.shape:
            prev_gray, prev_ids = self._prev
            flow = self._dis.calc(prev_gray, gray, None)  # prev(x) ~ this(x + flow(x))
            mx, my = flow_maps(flow)
            warped = cv2.remap(ids, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
            valid = inside(mx, my)  # pixels that leave the frame have nothing to compare with
            a, b = prev_ids[valid], warped[valid]
            self._pairs.update(b, a)
            changed = int(np.count_nonzero(a != b))
            self._changed += changed
            self._compared += int(a.size)
            self.per_pair.append((_pair_miou(a, b), changed / max(1, a.size)))
        self._prev = (gray, ids)

    def compute(self) -> dict[str, float | int | None]:
        """{"tc", "flip_rate", "frames"}; tc and flip_rate None with fewer than two frames."""
        if not self._compared:
            return {"tc": None, "flip_rate": None, "frames": self.frames}
        return {"tc": self._pairs.compute()["miou"], "flip_rate": self._changed / self._compared,
                "frames": self.frames}


def _pair_miou(a: np.ndarray, b: np.ndarray) -> float:
    """mIoU between two predictions (classes present in either), for one pair's TC."""
    cm = np.bincount(a.astype(np.int64) * _ALL_IDS + b, minlength=_ALL_IDS * _ALL_IDS).reshape(_ALL_IDS, _ALL_IDS)
    tp, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    present = union > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else 1.0


class VideoScore:
    """:func:`video_metrics` one frame at a time: ``update(frame, ids, label=None)`` in frame order,
    ``compute()`` at the end. ``label``: uint8 class ids (255 = ignore) at any size (the ids are
    brought to it by aligned nearest neighbour for mIoU), or None for an unlabelled frame; labels
    need ``num_classes``. ``seg``: the labelled frames' confusion matrix (None without classes)."""

    def __init__(self, num_classes: int | None = None, ignore_index: int = 255, preset: str = FLOW_PRESET):
        self.tc = TemporalConsistency(preset)
        self.seg = ConfusionMatrix(num_classes, ignore_index) if num_classes else None
        self.labelled = 0

    def update(self, frame: np.ndarray, ids: np.ndarray, label: np.ndarray | None = None) -> None:
        self.tc.update(frame, ids)
        if label is None:
            return
        if self.seg is None:
            raise ValueError("labels need num_classes")
        self.seg.update(ids if ids.shape == label.shape else resize_nearest(ids, label.shape), label)
        self.labelled += 1

    def compute(self) -> dict[str, float | int | None]:
        """{"tc", "flip_rate", "miou", "frames", "labelled"}; miou None when no frame had a label."""
        out = self.tc.compute()
        out["miou"] = self.seg.compute()["miou"] if self.labelled else None
        out["labelled"] = self.labelled
        return out


def video_metrics(items: Iterable[tuple], *, num_classes: int | None = None, ignore_index: int = 255,
                  preset: str = FLOW_PRESET) -> dict[str, float | int | None]:
    """TC, flip rate and (where labels exist) mIoU of a clip's predictions.

    ``items``: ``(frame, ids)`` or ``(frame, ids, label)`` in frame order; ``label`` (uint8, or
    None for an unlabelled frame) needs ``num_classes``. Returns ``{"tc", "flip_rate", "miou",
    "frames", "labelled"}``; miou is None when no frame had a label."""
    score = VideoScore(num_classes, ignore_index, preset)
    for item in items:
        score.update(item[0], item[1], item[2] if len(item) > 2 else None)
    return score.compute()
