"""Where frames come from: video files, image folders and globs, cameras and stream URLs.

Every source knows its frame rate, frame size (h, w) and, when finite, its frame count, and
yields BGR uint8 frames from :meth:`Source.read` until it returns ``None`` (end of stream).
Files and folders give every frame. Live sources (cameras, live streams) hand out the newest
frame only: a grabber thread keeps reading the device so its buffer never fills with stale
frames, and a frame nobody took before the next one arrived is dropped and counted
(:mod:`rtseg.pipeline.live`).
"""
from __future__ import annotations

import glob as globlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtseg.errors import RtsegError, redact

__all__ = ["Source", "VideoFileSource", "ImageFolderSource", "quiet_video_logs", "capture_fps", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # the images rtseg reads and writes
DEFAULT_FPS = 30.0  # for image folders and devices that do not report a rate
# Magic bytes of containers we would expect OpenCV to read: a file that starts like one but
# cannot be opened is truncated or corrupt rather than "not a video".
_CONTAINER_MAGIC = ((4, b"ftyp"), (0, b"RIFF"), (0, b"\x1aE\xdf\xa3"), (0, b"OggS"), (0, b"FLV"),
                    (0, b"\x00\x00\x01\xba"))


class Source(ABC):
    """A stream of BGR uint8 frames of one size."""

    name: str  # for messages and default output names
    fps: float
    size: tuple[int, int]  # (h, w)
    frame_count: int | None  # None when unknown or endless
    live: bool = False
    dropped: int = 0  # live sources: frames overwritten before anyone read them
    outages: int = 0  # live sources: times the device was lost (LiveSource)
    reconnects: int = 0  # live sources: times it came back
    image_suffix: str | None = None  # image folders: their images' suffix (".jpg"); None for video

    @abstractmethod
    def read(self, stop: threading.Event | None = None) -> np.ndarray | None:
        """The next frame, or None at the end of the stream (or once ``stop`` is set)."""

    def frame_name(self, index: int) -> str:
        """A file-name stem for frame ``index`` (used for the per-frame mask PNGs)."""
        return f"{index:06d}"

    def timestamp(self) -> float | None:
        """The capture time of the frame :meth:`read` gave last, in seconds: a file's presentation
        time, the wall clock (``time.time()``) when a camera's frame arrived, the caller's for frames
        handed in. None: the source has none."""
        return None

    def captured_at(self) -> float | None:
        """When the frame :meth:`read` gave last arrived, on ``time.perf_counter()``'s clock, for
        sources whose frames arrive on their own (cameras, streams, frames pushed in): where the
        latency from capture to result starts. None: when the read began (files, folders)."""
        return None

    def position(self) -> int | None:
        """The source's own number of the frame :meth:`read` gave last, counting the frames it
        skipped (--stride, stale live frames): gaps the temporal filter must see. None: the same as
        the stream's index (a file or folder read whole)."""
        return None

    def close(self) -> None:
        """Release the device or file."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> str:
        h, w = self.size
        count = f"{self.frame_count} frames" if self.frame_count else ("live" if self.live else "unknown length")
        return f"{self.name}: {h}x{w} at {self.fps:.3g} fps, {count}"  # HxW, as --size takes it


def quiet_video_logs() -> None:
    """Silence OpenCV's and FFmpeg's own stderr messages ("moov atom not found", "[ WARN ] ..."):
    the CLI turns every failure they describe into one line of its own. Set OPENCV_FFMPEG_LOGLEVEL
    to keep FFmpeg's (e.g. 24 = warnings)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used; -8 = quiet
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def capture_fps(cap: cv2.VideoCapture) -> float:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if 0 < fps < 1000 else DEFAULT_FPS


class VideoFileSource(Source):
    """A video file (or a finite stream URL) read with OpenCV's FFmpeg backend."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.name = path.stem
        self._path = path
        if not path.exists():
            raise RtsegError(f"video file not found: {path}")
        if not path.is_file():
            raise RtsegError(f"{path} is not a file (for a folder of images pass the folder itself)")
        if path.stat().st_size == 0:
            raise RtsegError(f"{path} is empty (0 bytes): it has no frames")
        self._cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self._cap.isOpened():
            head = path.read_bytes()[:16]
            if any(head[at:at + len(magic)] == magic for at, magic in _CONTAINER_MAGIC):
                raise RtsegError(f"{path} looks like a video container but cannot be decoded: it is truncated or corrupt")
            raise RtsegError(f"{path} is not a video OpenCV can read (tried FFmpeg); "
                             f"use a video file, an image folder or glob, a camera index or a stream URL")
        self._init_from_capture(str(path))

    def _init_from_capture(self, label: str) -> None:
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.fps = capture_fps(self._cap)
        ok, first = self._cap.read()  # decode one frame now, so a file without frames fails here, not mid-run
        if not ok or first is None:
            self._cap.release()
            raise RtsegError(f"{label} has no decodable frames (zero frames, or truncated before the first one)")
        self.size = first.shape[:2]
        self._pending: np.ndarray | None = first
        self._read = 0  # frames handed out
        self.cut_short = False  # the file ended before the frame count its header gives

    @classmethod
    def from_capture(cls, cap: cv2.VideoCapture, label: str) -> "VideoFileSource":
        """A finite stream (e.g. an http URL of a file) already opened."""
        self = cls.__new__(cls)
        label = redact(label)  # names, messages and titles never show a URL's credentials
        path_part = label.split("://", 1)[-1].split("?", 1)[0]
        last = path_part.rstrip("/").rsplit("/", 1)[-1] if "/" in path_part.rstrip("/") else ""
        self.name, self._path, self._cap = last.rsplit(".", 1)[0] or "stream", None, cap
        self._init_from_capture(label)
        return self

    def read(self, stop: threading.Event | None = None) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            ok, frame = self._cap.read()
            if not ok:
                # The header promised more frames than the file holds: it was cut short. Every frame
                # that decoded goes through (the run ends as at the end of the file) and a warning
                # says where decoding stopped. A shortfall of one frame is tolerated (some muxers
                # count a trailing empty packet).
                if self.frame_count is not None and self._read < self.frame_count - 1 and not self.cut_short:
                    self.cut_short = True
                    log.warning("%s ended after %d of its %d frames (decoding stopped at frame %d): the file is "
                                "truncated or corrupt; the %d frames that decoded were processed",
                                self._path or self.name, self._read, self.frame_count, self._read, self._read)
                return None
        self._read += 1
        return frame

    def timestamp(self) -> float | None:
        return (self._read - 1) / self.fps if self._read else None  # the frame's presentation time (constant rate)

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource(Source):
    """Every image in a folder, or every match of a glob, in name order."""

    def __init__(self, pattern: str | Path, *, fps: float = DEFAULT_FPS):
        pattern = str(pattern)
        if Path(pattern).is_dir():
            files = sorted(p for p in Path(pattern).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            self.name = Path(pattern).resolve().name
            where = f"folder {pattern}"
        elif Path(pattern).is_file():  # one image: a one-frame stream
            files = [Path(pattern)]
            self.name = Path(pattern).stem
            where = pattern
        else:
            files = sorted(Path(p) for p in globlib.glob(pattern) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            self.name = Path(pattern).parent.name or "images"
            where = f"glob {pattern!r}"
        if not files:
            raise RtsegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {where}")
        self._files = files
        self.image_suffix = files[0].suffix
        self.fps = fps
        self.frame_count = len(files)
        stems = [p.stem for p in files]
        self._names = stems if len(set(stems)) == len(stems) else [f"{i:06d}_{s}" for i, s in enumerate(stems)]
        self._next = 0
        first = self._load(0)
        self.size = first.shape[:2]
        self._pending: np.ndarray | None = first
        self._warned = False

    def _load(self, i: int) -> np.ndarray:
        img = cv2.imread(str(self._files[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise RtsegError(f"cannot read image {self._files[i]} (not an image, or truncated)")
        return img

    def read(self, stop: threading.Event | None = None) -> np.ndarray | None:
        if self._next >= len(self._files):
            return None
        if self._pending is not None:
            img, self._pending = self._pending, None
        else:
            img = self._load(self._next)
        self._next += 1
        if img.shape[:2] != self.size:  # a video needs one frame size: fit odd ones to the first
            if not self._warned:
                log.warning("images differ in size; resizing to the first one's %dx%d", self.size[0], self.size[1])
                self._warned = True
            img = cv2.resize(img, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        return img

    def frame_name(self, index: int) -> str:
        return self._names[index] if index < len(self._names) else f"{index:06d}"
