"""--start, --end and --stride: a part of a source, every Nth frame of it.

Positions are frame numbers (``120``) or times (``4.5s``, ``1:02``, ``0:01:02.5``), turned into
frame numbers with the source's frame rate. Frames before the start are read and dropped rather
than sought to: seeking by frame is inexact with many codecs, and decoding a frame costs a few
milliseconds. The output keeps real time: with --stride N its frame rate is the source's / N.
"""
from __future__ import annotations

import math
import re
import threading

import numpy as np

from rtseg.errors import RtsegError
from rtseg.pipeline.sources import Source

__all__ = ["parse_position", "Trimmed", "trim"]

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")


def parse_position(text: str, flag: str) -> tuple[str, float]:
    """'120' -> ('frame', 120); '4.5s' -> ('time', 4.5); '1:02' -> ('time', 62.0); '0:01:02.5' -> 62.5."""
    t = text.strip().lower()
    try:
        if t.isdigit():
            return "frame", int(t)
        if t.endswith("s") and t[:-1]:
            value = float(t[:-1])
            if value >= 0 and math.isfinite(value):
                return "time", value
        m = _CLOCK.match(t)
        if m:
            hours, minutes, seconds = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
            return "time", hours * 3600 + minutes * 60 + seconds
    except ValueError:
        pass
    raise RtsegError(f"{flag} {text!r} is not a position; use a frame number (120) or a time (4.5s, 1:02, 0:01:02.5)")


def _frame(position: tuple[str, float], fps: float) -> int:
    kind, value = position
    return int(value) if kind == "frame" else int(round(value * fps))


class Trimmed(Source):
    """Frames ``start`` <= i < ``end`` (None: to the end) of ``inner``, every ``stride``-th."""

    def __init__(self, inner: Source, start: int = 0, end: int | None = None, stride: int = 1):
        self.inner, self.start, self.end, self.stride = inner, start, end, stride
        self.name, self.size, self.live, self.image_suffix = inner.name, inner.size, inner.live, inner.image_suffix
        self.fps = inner.fps / stride
        stop = end if inner.frame_count is None else min(inner.frame_count, end if end is not None else inner.frame_count)
        self.frame_count = None if stop is None else max(0, math.ceil((stop - start) / stride))
        self._pos = 0  # index in the inner source of the next frame it gives
        self._original: list[int] = []  # inner index of each frame handed out (for names)

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self.inner.dropped

    @property
    def outages(self) -> int:  # type: ignore[override]
        return self.inner.outages

    @property
    def reconnects(self) -> int:  # type: ignore[override]
        return self.inner.reconnects

    @property
    def cut_short(self) -> bool:
        return getattr(self.inner, "cut_short", False)

    def read(self, stop: threading.Event | None = None) -> np.ndarray | None:
        while True:
            if self.end is not None and self._pos >= self.end:
                return None
            frame = self.inner.read(stop)
            if frame is None:
                return None
            index, self._pos = self._pos, self._pos + 1
            if index >= self.start and (index - self.start) % self.stride == 0:
                self._original.append(index)
                return frame

    def timestamp(self) -> float | None:
        return self.inner.timestamp()

    def captured_at(self) -> float | None:
        return self.inner.captured_at()

    def position(self) -> int | None:
        """The inner source's number of the last frame (its own, else the count of frames read)."""
        inner = self.inner.position()
        return inner if inner is not None else (self._original[-1] if self._original else None)

    def frame_name(self, index: int) -> str:
        """The inner source's name for the frame, so masks keep the original numbering."""
        return self.inner.frame_name(self._original[index] if index < len(self._original) else index)

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        part = []
        if self.start:
            part.append(f"from frame {self.start}")
        if self.end is not None:
            part.append(f"to frame {self.end}")
        if self.stride > 1:
            part.append(f"one frame in {self.stride}")
        return self.inner.describe() + (f"; {', '.join(part)}: {self.frame_count if self.frame_count is not None else 'an unknown number of'} frames"
                                         if part else "")


def trim(source: Source, *, start: str | None = None, end: str | None = None, stride: int = 1) -> Source:
    """``source`` itself when nothing is asked, else a :class:`Trimmed` view; one-line errors
    for a bad position, a stride below 1, an end before the start or a start past the end."""
    if stride < 1:
        raise RtsegError(f"--stride {stride} is not allowed; use >= 1 (1 = every frame)")
    if start is None and end is None and stride == 1:
        return source
    first = _frame(parse_position(start, "--start"), source.fps) if start is not None else 0
    last = _frame(parse_position(end, "--end"), source.fps) if end is not None else None
    if last is not None and last <= first:
        raise RtsegError(f"--end {end} is not after --start {start or 0}: nothing to process")
    if source.frame_count is not None and first >= source.frame_count:
        raise RtsegError(f"--start {start} is past the end of {source.name} ({source.frame_count} frames at "
                         f"{source.fps:.3g} fps)")
    return Trimmed(source, first, last, stride)
