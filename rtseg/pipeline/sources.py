"""Where frames come from: video files, image folders and globs, cameras and stream URLs.

Every source knows its frame rate, frame size (h, w) and, when finite, its frame count, and
yields BGR uint8 frames from :meth:`Source.read` until it returns ``None`` (end of stream).
Files and folders give every frame. Live sources (cameras, live streams) hand out the newest
frame only: a grabber thread keeps reading the device so its buffer never fills with stale
frames, and a frame nobody took before the next one arrived is dropped and counted.
"""
from __future__ import annotations

import glob as globlib
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from rtseg.errors import RtsegError, redact

__all__ = ["Source", "VideoFileSource", "ImageFolderSource", "LiveSource", "open_source", "open_camera",
           "quiet_video_logs", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
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

    @abstractmethod
    def read(self, stop: threading.Event | None = None) -> np.ndarray | None:
        """The next frame, or None at the end of the stream (or once ``stop`` is set)."""

    def frame_name(self, index: int) -> str:
        """A file-name stem for frame ``index`` (used for the per-frame mask PNGs)."""
        return f"{index:06d}"

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


def _fps(cap: cv2.VideoCapture) -> float:
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
        self.fps = _fps(self._cap)
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


class Capture(Protocol):
    """What :class:`LiveSource` needs from a device: cv2.VideoCapture's read/release."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


class LiveSource(Source):
    """A live device: a grabber thread reads continuously and keeps only the newest frame.

    ``read`` waits for a frame newer than the last one handed out; frames replaced before they
    were taken are counted in ``dropped``. Without ``reopen`` the stream ends when the device
    stops delivering. With it (cameras and stream URLs from :func:`open_source`), a device that
    stops, fails or stalls (no frame for ``stall_timeout`` seconds) is opened again, up to
    ``reconnect`` times in a row with growing waits; frames then carry on, and ``outages`` and
    ``reconnects`` count what happened. A grabber stuck in a read is abandoned, never waited for.
    Each grabber thread owns its capture and releases it when it leaves: releasing a capture
    while another thread is inside its read crashes FFmpeg (seen: a segfault on a stalled stream).
    """

    live = True
    BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # s before each attempt of one outage (the last one repeats)

    def __init__(self, capture: Capture, *, name: str, fps: float, first_frame_timeout: float = 10.0,
                 reopen: Callable[[], Capture | None] | None = None, reconnect: int = 0, stall_timeout: float = 5.0):
        if reconnect < 0:
            raise RtsegError(f"--reconnect {reconnect} is not allowed; use >= 0 (0 = end the run when the source stops)")
        if not stall_timeout > 0:
            raise RtsegError(f"--stall-timeout {stall_timeout} is not allowed; use a number of seconds > 0")
        self.name, self.fps, self.frame_count = name, fps, None
        self._reopen, self.reconnect, self.stall_timeout = reopen, reconnect, stall_timeout
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None  # newest frame not yet handed out
        self._ended = False  # the current device stopped delivering
        self._closed = False
        self._error: BaseException | None = None
        self._gen = 0  # which capture the grabber that may write frames serves
        self._last = time.monotonic()  # when the last frame arrived
        self.grabbed = 0  # frames the device delivered
        self.dropped = 0
        self.outages = 0  # times the source was lost
        self.reconnects = 0  # times it came back
        self._start(capture)
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._ended, timeout=first_frame_timeout)
            first = self._frame
        if first is None:
            self.close()
            raise RtsegError(f"{name} opened but delivered no frame within {first_frame_timeout:g} s")
        self.size = first.shape[:2]

    def _start(self, capture: Capture) -> None:
        with self._cond:
            self._gen += 1
            self._cap, self._ended, self._error, self._last = capture, False, None, time.monotonic()
            gen = self._gen
        self._thread = threading.Thread(target=self._grab, args=(capture, gen), name=f"grab-{self.name}-{gen}",
                                        daemon=True)
        self._thread.start()

    def _grab(self, cap: Capture, gen: int) -> None:
        try:
            self._grab_frames(cap, gen)
        finally:
            cap.release()  # here and nowhere else: no other thread may release a capture being read

    def _grab_frames(self, cap: Capture, gen: int) -> None:
        try:
            while True:
                ok, frame = cap.read()  # blocks until the device has a frame
                with self._cond:
                    if self._closed or gen != self._gen:
                        return  # closed, or abandoned for a new capture: its frames are not wanted
                    if not ok or frame is None:
                        self._ended = True
                        self._cond.notify_all()
                        return
                    if self._frame is not None:
                        self.dropped += 1  # newest wins: the one nobody took is stale now
                    self._frame, self._last = frame, time.monotonic()
                    self.grabbed += 1
                    self._cond.notify_all()
        except Exception as exc:  # handed to the reader, which reports it (or reconnects)
            with self._cond:
                if gen == self._gen:
                    self._error, self._ended = exc, True
                    self._cond.notify_all()

    def read(self, stop: threading.Event | None = None) -> np.ndarray | None:
        while True:
            with self._cond:
                while self._frame is None and not self._ended and not self._closed:
                    if stop is not None and stop.is_set():
                        return None
                    if self._reopen is not None and time.monotonic() - self._last > self.stall_timeout:
                        break  # stalled: a read that never returns
                    self._cond.wait(timeout=0.1)  # wakes on a new frame; the timeout re-checks stop and stalls
                if self._frame is not None:
                    frame, self._frame = self._frame, None
                    return frame
                if self._closed:
                    return None
                error = self._error
                reason = (f"failed ({type(error).__name__}: {error})" if error is not None else
                          "stopped delivering" if self._ended else f"sent no frame for {self.stall_timeout:g} s")
            if self._reopen is None or self.reconnect == 0:
                if error is not None:
                    raise RtsegError(f"{self.name} failed: {type(error).__name__}: {error}")
                return None  # the device ended: so does the stream
            if not self._reconnect(reason, stop):
                if stop is not None and stop.is_set():
                    return None
                raise RtsegError(f"{self.name} was lost ({reason}) and did not come back after {self.reconnect} "
                                 f"attempt(s); what was written so far is kept")

    def _reconnect(self, reason: str, stop: threading.Event | None) -> bool:
        """Open the device again, up to ``reconnect`` times; True once a frame arrives."""
        self.outages += 1
        t0 = time.monotonic()
        log.warning("%s %s; reconnecting (up to %d attempts)", self.name, reason, self.reconnect)
        with self._cond:
            self._gen += 1  # the old grabber's frames are dropped; it releases its capture when its read returns
        for attempt in range(self.reconnect):
            wait = self.BACKOFF[min(attempt, len(self.BACKOFF) - 1)]
            if stop is not None:
                if stop.wait(wait):
                    return False  # Ctrl-C or the end of the run during the wait: stop at once
            else:
                time.sleep(wait)
            cap = None
            try:
                cap = self._reopen()
            except Exception as exc:  # the opener failing is one more failed attempt
                log.debug("reopening %s failed: %s", self.name, exc)
            if cap is None:
                continue
            self._start(cap)
            with self._cond:
                self._cond.wait_for(lambda: self._frame is not None or self._ended or self._closed,
                                    timeout=self.stall_timeout)
                if self._frame is not None:
                    self.reconnects += 1
                    log.warning("%s is back after %.1f s (attempt %d); carrying on", self.name,
                                time.monotonic() - t0, attempt + 1)
                    return True
                if self._closed:
                    return False
                self._gen += 1  # no frame from this one either: its grabber lets go of it
        return False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        # The grabber releases its capture as it leaves; a read in progress ends within a frame
        # time, and a stuck one is left to finish on its own (daemon thread), never waited for.
        self._thread.join(timeout=1.0)


def _opener(target: int | str) -> Callable[[], Any]:
    """Opens ``target`` (a camera index or a URL) again: the capture, or None when it does not open."""
    def reopen():
        cap = cv2.VideoCapture(target) if isinstance(target, int) else cv2.VideoCapture(target, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap
    return reopen


def open_camera(index: int | str, *, what: str | None = None, reconnect: int = 5,
                stall_timeout: float = 5.0) -> LiveSource:
    """Camera ``index`` (or a live stream URL) as a :class:`LiveSource` that reconnects up to
    ``reconnect`` times when the device stops or stalls for ``stall_timeout`` seconds."""
    label = what or (f"camera {index}" if isinstance(index, int) else redact(str(index)))
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        if isinstance(index, int):
            devices = sorted(str(p) for p in Path("/dev").glob("video*"))
            raise RtsegError(f"camera {index} cannot be opened (no such device, busy, or no permission); "
                             f"video devices here: {', '.join(devices) or 'none'}")
        raise RtsegError(f"cannot open stream {label} (unreachable, or a protocol OpenCV's FFmpeg cannot read)")
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # a hint some backends honour: less device-side latency
    name = f"camera{index}" if isinstance(index, int) else "stream"
    return LiveSource(cap, name=name, fps=_fps(cap), reopen=_opener(index), reconnect=reconnect,
                      stall_timeout=stall_timeout)


def open_source(spec: str | int | Path, *, reconnect: int = 5, stall_timeout: float = 5.0) -> Source:
    """SOURCE as the CLI takes it: a camera index ("0"), a URL (rtsp/rtmp/http/...), a video
    file, an image folder, one image, or a glob of images. Live sources (cameras, stream URLs)
    reconnect up to ``reconnect`` times (0: the run ends with the stream); files never do."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return open_camera(int(spec), reconnect=reconnect, stall_timeout=stall_timeout)
    text = str(spec)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"):
            raise RtsegError(f"unsupported URL scheme {scheme!r} in {redact(text)}; use rtsp, rtmp, http(s), udp, tcp or srt")
        cap = cv2.VideoCapture(text, cv2.CAP_FFMPEG)  # the real URL: the only place it is used
        if not cap.isOpened():
            raise RtsegError(f"cannot open stream {redact(text)} (unreachable, or not a video stream)")
        if cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0:  # a file served over http: read every frame
            return VideoFileSource.from_capture(cap, text)
        return LiveSource(cap, name="stream", fps=_fps(cap), reopen=_opener(text), reconnect=reconnect,
                          stall_timeout=stall_timeout)
    path = Path(text)
    is_glob = any(c in text for c in "*?[")
    if not is_glob and not path.exists():
        raise RtsegError(f"no such file or folder: {text} (SOURCE is a video file, an image folder or glob, "
                         f"a camera index or a stream URL)")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES or is_glob:
        return ImageFolderSource(text)
    return VideoFileSource(path)
