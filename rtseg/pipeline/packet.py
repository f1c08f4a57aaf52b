"""What travels down the pipeline: one frame and what the stages made of it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtseg.errors import RtsegError
from rtseg.viz import VIEWS

__all__ = ["Packet", "Look"]


@dataclass
class Look:
    """How the picture is drawn. Mutable: the window's keys change it while the pipeline runs
    (attribute reads and writes are atomic, so stages read it without a lock)."""

    view: str = "overlay"  # overlay | mask | side-by-side
    alpha: float = 0.5  # weight of the class colours in the overlay, 0..1

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise RtsegError(f"--view must be one of {', '.join(VIEWS)}; got {self.view!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise RtsegError(f"--alpha must be in 0..1; got {self.alpha}")

    def key(self) -> tuple[str, float]:
        return self.view, round(self.alpha, 3)


@dataclass
class Packet:
    """One frame on its way through read -> transform -> infer -> post -> write."""

    index: int  # position in the stream, 0-based
    name: str  # file-name stem for per-frame outputs
    frame: np.ndarray  # BGR uint8 (H, W, 3), as read
    t_read: float  # time.perf_counter() when reading it began (for latency)
    batch: np.ndarray | None = None  # uint8 (1, h, w, 3) at the inference size (transform)
    ids: np.ndarray | None = None  # uint8 class ids: (1, h, w) after infer, (H, W) after post
    picture: np.ndarray | None = None  # BGR uint8 the sinks write (post)
    look: tuple[str, float] | None = None  # the (view, alpha) `picture` was drawn with
