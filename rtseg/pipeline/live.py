"""Live sources: cameras and stream URLs, read by a grabber thread that keeps only the newest
frame, and opened again when they stop or stall."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from rtseg.errors import RtsegError, redact
from rtseg.pipeline.sources import Source, capture_fps

__all__ = ["Capture", "LiveSource", "open_camera", "reopener"]

log = logging.getLogger(__name__)


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
        self._frame_no = self._handed = -1  # number (in `grabbed`) of the newest frame, of the last handed out
        self._stamp = self._handed_stamp = (None, None)  # (timestamp s, perf_counter) of the newest / last handed out
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
                    self._frame, self._last, self._frame_no = frame, time.monotonic(), self.grabbed
                    given = cap.timestamp() if hasattr(cap, "timestamp") else None  # frames handed in carry their own
                    self._stamp = (time.time() if given is None else given, time.perf_counter())
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
                    frame, self._frame, self._handed = self._frame, None, self._frame_no
                    self._handed_stamp = self._stamp
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

    def timestamp(self) -> float | None:
        return self._handed_stamp[0]

    def captured_at(self) -> float | None:
        return self._handed_stamp[1]

    def position(self) -> int | None:
        """The number of the frame handed out last among every frame the device delivered (the
        dropped ones leave gaps)."""
        return self._handed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        # The grabber releases its capture as it leaves; a read in progress ends within a frame
        # time, and a stuck one is left to finish on its own (daemon thread), never waited for.
        self._thread.join(timeout=1.0)


def reopener(target: int | str) -> Callable[[], Any]:
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
    return LiveSource(cap, name=name, fps=capture_fps(cap), reopen=reopener(index), reconnect=reconnect,
                      stall_timeout=stall_timeout)
