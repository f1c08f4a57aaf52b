"""Opening a source from what the caller names or holds: :func:`open_source` for SOURCE as the CLI
takes it (camera index, URL, video file, image folder or glob) and :func:`open_frames` for frames
already in the caller's hands (an iterable of frames or of ``(frame, timestamp)`` pairs, or a
:class:`FrameFeed` that callback-driven code pushes into). Below both ``sources`` and ``live``.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from rtseg.errors import RtsegError, redact
from rtseg.pipeline.live import LiveSource, open_camera, reopener
from rtseg.pipeline.sources import (DEFAULT_FPS, IMAGE_SUFFIXES, ImageFolderSource, Source, VideoFileSource,
                                    capture_fps)

__all__ = ["open_source", "open_frames", "FrameFeed", "FramesSource"]

_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


def open_source(spec: str | int | Path, *, reconnect: int = 5, stall_timeout: float = 5.0) -> Source:
    """SOURCE as the CLI takes it: a camera index ("0"), a URL (rtsp/rtmp/http/...), a video
    file, an image folder, one image, or a glob of images. Live sources (cameras, stream URLs)
    reconnect up to ``reconnect`` times (0: the run ends with the stream); files never do."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return open_camera(int(spec), reconnect=reconnect, stall_timeout=stall_timeout)
    text = str(spec)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in _SCHEMES:
            raise RtsegError(f"unsupported URL scheme {scheme!r} in {redact(text)}; use rtsp, rtmp, http(s), udp, tcp or srt")
        cap = cv2.VideoCapture(text, cv2.CAP_FFMPEG)  # the real URL: the only place it is used
        if not cap.isOpened():
            raise RtsegError(f"cannot open stream {redact(text)} (unreachable, or not a video stream)")
        if cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0:  # a file served over http: read every frame
            return VideoFileSource.from_capture(cap, text)
        return LiveSource(cap, name="stream", fps=capture_fps(cap), reopen=reopener(text), reconnect=reconnect,
                          stall_timeout=stall_timeout)
    path = Path(text)
    is_glob = any(c in text for c in "*?[")
    if not is_glob and not path.exists():
        raise RtsegError(f"no such file or folder: {text} (SOURCE is a video file, an image folder or glob, "
                         f"a camera index or a stream URL)")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES or is_glob:
        return ImageFolderSource(text)
    return VideoFileSource(path)


def _frame_and_stamp(item: Any, index: int) -> tuple[np.ndarray, float | None]:
    """An item of the caller's frames: a BGR uint8 (H, W, 3) frame, or a (frame, timestamp) pair."""
    frame, stamp = (item[0], item[1]) if isinstance(item, tuple) and len(item) == 2 else (item, None)
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise RtsegError(f"frame {index}: rtseg takes BGR uint8 (H, W, 3) frames, or (frame, timestamp) pairs; "
                         f"got shape {frame.shape} dtype {frame.dtype}")
    return frame, None if stamp is None else float(stamp)


class FrameFeed:
    """Frames pushed in by the caller's own code (a ROS callback, a GStreamer appsink, a camera
    SDK): ``feed.put(frame, timestamp)`` from any thread, ``feed.close()`` at the end; give the feed
    to :func:`rtseg.stream` as its source. Live: the newest frame wins, stale ones are dropped
    (counted in ``Result.dropped``) and ``put`` never blocks. ``timestamp`` (seconds, the caller's
    clock) comes back on each result; None: the wall clock when it was put."""

    def __init__(self, *, fps: float = DEFAULT_FPS, name: str = "feed"):
        self.fps, self.name = fps, name
        self._cond = threading.Condition()
        self._item: tuple[np.ndarray, float] | None = None
        self._closed = False
        self._last: float | None = None
        self._count = 0

    def put(self, frame: np.ndarray, timestamp: float | None = None) -> None:
        frame, stamp = _frame_and_stamp((frame, timestamp), self._count)
        with self._cond:
            if self._closed:
                raise RtsegError("FrameFeed.put after close()")
            self._item = (frame, time.time() if stamp is None else stamp)
            self._count += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # What LiveSource asks of a device (rtseg.pipeline.live.Capture), plus the frame's timestamp.
    def read(self) -> tuple[bool, np.ndarray | None]:
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed)
            if self._item is None:
                return False, None
            (frame, self._last), self._item = self._item, None
            return True, frame

    def timestamp(self) -> float | None:
        return self._last

    def release(self) -> None:
        self.close()


class _IterCapture:
    """An iterable of frames read as a device is: for a live source over the caller's iterator."""

    def __init__(self, frames: Iterable[Any]):
        self._it, self._last, self._n = iter(frames), None, 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        item = next(self._it, None)
        if item is None:
            return False, None
        frame, stamp = _frame_and_stamp(item, self._n)
        self._n += 1
        self._last = stamp
        return True, frame

    def timestamp(self) -> float | None:
        return self._last

    def release(self) -> None:
        _close(self._it)


class FramesSource(Source):
    """The caller's frames, every one, in order (not live): an iterable of BGR frames or of
    ``(frame, timestamp)`` pairs; without timestamps a frame's is its index / ``fps``."""

    def __init__(self, frames: Iterable[Any], *, fps: float = DEFAULT_FPS, name: str = "frames"):
        self.name, self.fps, self.frame_count = name, fps, len(frames) if hasattr(frames, "__len__") else None
        self._it: Iterator[Any] = iter(frames)
        first = next(self._it, None)
        if first is None:
            raise RtsegError("the frames given have none")
        self._pending: tuple[np.ndarray, float | None] | None = _frame_and_stamp(first, 0)
        self.size = self._pending[0].shape[:2]
        self._n, self._stamp = 0, None

    def read(self, stop: threading.Event | None = None) -> np.ndarray | None:
        if self._pending is not None:
            (frame, stamp), self._pending = self._pending, None
        else:
            item = next(self._it, None)
            if item is None:
                return None
            frame, stamp = _frame_and_stamp(item, self._n)
            if frame.shape[:2] != self.size:
                raise RtsegError(f"frame {self._n} is {frame.shape[0]}x{frame.shape[1]}; the first was "
                                 f"{self.size[0]}x{self.size[1]} (one size a stream)")
        self._stamp = stamp if stamp is not None else self._n / self.fps
        self._n += 1
        return frame

    def timestamp(self) -> float | None:
        return self._stamp

    def close(self) -> None:
        _close(self._it)


def _close(frames: Any) -> None:
    """Close the caller's generator, if it is one (its ``finally`` runs: a camera released)."""
    close = getattr(frames, "close", None)
    if callable(close):
        close()


def open_frames(frames: Any, *, fps: float | None = None, live: bool | None = None) -> Source:
    """A source over frames the caller holds: a :class:`FrameFeed` (live), or an iterable of
    frames or ``(frame, timestamp)`` pairs, live (newest wins, a thread pulls from it) when
    ``live`` is True, else every frame in order."""
    if isinstance(frames, FrameFeed):
        return LiveSource(frames, name=frames.name, fps=fps or frames.fps, first_frame_timeout=3600.0)
    if (isinstance(frames, np.ndarray) and frames.ndim != 4) or isinstance(frames, bytes) or not hasattr(frames, "__iter__"):
        raise RtsegError(f"a source is a path, a camera index, a URL, a FrameFeed or an iterable of frames; "
                         f"got {type(frames).__name__}")
    if live:
        return LiveSource(_IterCapture(frames), name="frames", fps=fps or DEFAULT_FPS)
    return FramesSource(frames, fps=fps or DEFAULT_FPS)
