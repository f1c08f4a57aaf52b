"""What travels down the pipeline: one frame and what the stages made of it."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from rtseg.errors import RtsegError
from rtseg.viz import ALL_VIEWS, resize_nearest

__all__ = ["Packet", "Look"]


@dataclass
class Look:
    """How the picture is drawn. Mutable: the window's keys change it while the pipeline runs
    (attribute reads and writes are atomic, so stages read it without a lock)."""

    view: str = "overlay"  # overlay | mask | side-by-side
    alpha: float = 0.5  # weight of the class colours in the overlay, 0..1
    legend: bool = True  # class colours with their names in a corner (viz.Legend)

    def __post_init__(self) -> None:
        if self.view not in ALL_VIEWS:
            raise RtsegError(f"--view must be one of {', '.join(ALL_VIEWS)}; got {self.view!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise RtsegError(f"--alpha must be in 0..1; got {self.alpha}")

    def key(self) -> tuple[str, float, bool]:
        return self.view, round(self.alpha, 3), bool(self.legend)


@dataclass
class Packet:
    """One frame on its way through read -> transform -> infer -> post -> write."""

    index: int  # position in the stream, 0-based
    name: str  # file-name stem for per-frame outputs
    frame: np.ndarray  # BGR uint8 (H, W, 3), as read
    t_read: float  # time.perf_counter() when reading it began (for latency)
    batch: np.ndarray | None = None  # uint8 (1, h, w, 3) at the inference size (transform)
    ids: np.ndarray | None = None  # uint8 class ids (h, w) at the inference size (letterboxed: the frame's part), from infer on
    picture: np.ndarray | None = None  # uint8, what the sinks write (post), in `picture_format`
    picture_format: str = "bgr"  # bgr: (H, W', 3); i420: (H * 3/2, W') planar YUV 4:2:0 (W' = W or 2W)
    look: tuple[str, float, bool] | None = None  # the (view, alpha, legend) `picture` was drawn with
    timings: dict[str, float] = field(default_factory=dict)  # ms this frame spent in each stage so far
    source_index: int | None = None  # the source's own frame number (gaps: --stride, stale live frames); None: index
    epoch: int = 0  # the source's reconnect count when the frame was read (a change: a new connection)
    timestamp: float | None = None  # s: the source's capture time (a file's PTS, the wall clock at a camera's grab, the caller's)
    t_capture: float | None = None  # perf_counter when a live frame arrived (None: t_read); where latency starts
    scores: np.ndarray | None = None  # float16 (C, h', w') class scores at the network's resolution (--temporal on)
    probs: np.ndarray | None = None  # float32 (h', w', C) class probabilities at the network's resolution (kept when asked)
    _frame_ids: np.ndarray | None = field(default=None, repr=False)  # `ids` at the frame's size, once asked
    _confidence: dict = field(default_factory=dict, repr=False)  # size -> the top probability there, once asked

    def frame_ids(self) -> np.ndarray:
        """The class ids at the frame's size (H, W), enlarged from ``ids`` on first use (aligned
        nearest neighbour, as Engine.postprocess) and kept: only the sinks that need them
        (--masks) pay for the enlargement. ``ids`` stays at the inference size."""
        if self._frame_ids is None:
            size = self.frame.shape[:2]
            self._frame_ids = self.ids if self.ids.shape == size else resize_nearest(self.ids, size)
        return self._frame_ids

    def confidence(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The top class's probability, float32 (h, w) in 0..1, at ``size`` (default: the frame's),
        enlarged bilinearly from the network's resolution; needs ``probs`` (kept when asked)."""
        size = tuple(size or self.frame.shape[:2])
        if size not in self._confidence:
            if self.probs is None:
                raise RtsegError("no class scores were kept for this frame (the engine gives class ids only, "
                                 "or the run was not asked for confidence)")
            top = self.probs.max(axis=2)
            h, w = size
            self._confidence[size] = top if top.shape == size else cv2.resize(top, (w, h), interpolation=cv2.INTER_LINEAR)
        return self._confidence[size]
