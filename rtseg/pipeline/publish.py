"""Publishing the overlay to a streaming server: ``-o rtsp://HOST:PORT/PATH`` (:class:`StreamSink`).

The pictures are encoded as the file output encodes them (H.264, x264 ultrafast, a keyframe a
second: :class:`~rtseg.pipeline.video_writers.H264Writer`), tuned for latency and stamped with the
time each was made, and sent over TCP to an RTSP server that takes published streams (MediaMTX,
or any server a user runs; ``ffplay -rtsp_flags listen`` for one viewer). A thread of its own
encodes and sends, so that a slow or lost server never holds up the write stage for longer than
``WAIT_S``: a picture the sender has not taken by then is dropped.

When the server goes away, or is not there when the first picture comes, the run carries on with
its other outputs: the pictures are dropped while the output is down, and it is opened again with
the waits of a live source's reconnects (0.5, 1, 2, 4, 8 s, then every 8 s) until the run ends.
``down_s``, ``outages`` and ``reconnects`` say what happened (the run's summary shows them).

Why RTSP only: PyAV connects (``avformat_write_header``, ``avio_open``) without letting go of
Python's GIL, so a connection that hangs freezes every thread of the run, Ctrl-C included. The
RTSP muxer's ``timeout`` bounds each step of it (``IO_TIMEOUT_S``); PyAV opens RTMP with no
timeout at all (a firewall that drops the packets would freeze the run for minutes), and its
wheels have no SRT. MediaMTX takes the RTSP stream and serves it as RTMP, HLS and WebRTC too.
"""
from __future__ import annotations

import logging
import queue
import re
import threading
import time
from urllib.parse import urlsplit

import cv2
import numpy as np

from rtseg.errors import RtsegError, redact
from rtseg.pipeline.live import LiveSource
from rtseg.pipeline.packet import Packet
from rtseg.pipeline.runner import Sink
from rtseg.pipeline.video_writers import H264Writer
from rtseg.viz import i420_to_bgr

__all__ = ["StreamSink", "is_stream_url", "check_stream_url", "SCHEMES"]

log = logging.getLogger(__name__)

SCHEMES = {"rtsp": "rtsp"}  # URL scheme -> the FFmpeg muxer that publishes to it
_REFUSED = {  # schemes a user may try, and why they are not taken (see the module's docstring)
    "rtmp": "PyAV opens RTMP connections with no timeout, so a server that does not answer would freeze the run",
    "rtmps": "PyAV opens RTMP connections with no timeout, so a server that does not answer would freeze the run",
    "srt": "PyAV's FFmpeg has no SRT",
}
WAIT_S = 1.0  # s the write stage waits for the sender to take a picture before dropping it (a stuck send)
IO_TIMEOUT_S = 2.0  # s a connect, a reply or a send may take before the server counts as gone
_QUEUE = 2  # pictures between the write stage and the sender: a short queue is a short latency
_TICK = 0.2  # s: how often the waiting sender re-checks the stop event
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_stream_url(text: object) -> bool:
    """Whether ``-o``'s value is a URL (``scheme://...``) rather than a file or folder."""
    return isinstance(text, str) and _URL.match(text) is not None


def check_stream_url(url: str) -> str:
    """The muxer for ``url``, or a one-line error: the scheme (rtsp:// only), a host, a port, a path."""
    shown = redact(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _REFUSED:
        raise RtsegError(f"--output {shown}: {scheme}:// is not supported ({_REFUSED[scheme]}); publish with "
                         "rtsp://HOST:PORT/PATH to MediaMTX, which serves it as RTMP, HLS and WebRTC too")
    if scheme not in SCHEMES:
        raise RtsegError(f"--output {shown}: a {scheme}:// URL cannot be published to; use rtsp://HOST:PORT/PATH "
                         "(an RTSP server such as MediaMTX), or a file or folder")
    try:
        port = parts.port
    except ValueError:
        raise RtsegError(f"--output {shown}: the port is not a number 1..65535") from None
    if not parts.hostname:
        raise RtsegError(f"--output {shown}: no host; use rtsp://HOST:PORT/PATH (rtsp://127.0.0.1:8554/seg)")
    if port == 0:
        raise RtsegError(f"--output {shown}: the port is not a number 1..65535")
    if parts.path.strip("/") == "":
        raise RtsegError(f"--output {shown}: no path naming the stream; use rtsp://HOST:PORT/PATH "
                         "(rtsp://127.0.0.1:8554/seg)")
    return SCHEMES[scheme]


class StreamSink(Sink):
    """Publishes ``packet.picture`` as H.264 to ``url`` at about ``fps`` (the GOP's unit), at the
    size of the first picture. ``threads``: x264's (see ``encoder_threads``). Never raises for a
    server that is missing or lost (see the module's docstring); reports ``frames_sent``,
    ``frames_dropped``, ``down_s``, ``outages`` and ``reconnects``."""

    takes_i420 = True

    def __init__(self, url: str, fps: float, *, threads: int = 0):
        self.url, self.fps, self.threads = url, fps, threads
        self.muxer = check_stream_url(url)
        self.shown = redact(url)
        self.frames_sent = 0  # pictures handed to a connected stream
        self.outages = 0  # times the server was lost, or not reached when the output opened
        self.reconnects = 0  # times it came back
        self.down_s = 0.0  # s the output was down over the run
        self._skipped = 0  # pictures the write stage dropped (the sender busy in a stuck send)
        self._discarded = 0  # pictures the sender dropped (the output down)
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE)
        self._stop = threading.Event()
        self._busy = False  # the last picture waited WAIT_S in vain: the next ones do not wait
        self._error: BaseException | None = None  # a failure that is not the network's: raised by write
        self._writer: H264Writer | None = None
        self._size: tuple[int, int] | None = None  # (w, h) of the first picture: the stream's
        self._down_since: float | None = None  # monotonic s the current outage began (None: up)
        self._attempt = 0  # failed attempts in the current outage
        self._next_try = 0.0  # monotonic s before which the down output does not try again
        self._thread = threading.Thread(target=self._send_loop, name="rtseg-publish", daemon=True)
        self._thread.start()

    @property
    def frames_dropped(self) -> int:
        """Pictures not sent: the output down, or its sender stuck."""
        return self._skipped + self._discarded

    def write(self, packet: Packet) -> None:
        if self._error is not None:  # a fault of the sender's own (the network's are outages): exit 1, named
            raise RuntimeError(f"publishing to {self.shown} failed: {type(self._error).__name__}: {self._error}") \
                from self._error
        item = (packet.picture, packet.picture_format, time.monotonic())
        try:
            if self._busy:
                self._queue.put_nowait(item)
            else:
                self._queue.put(item, timeout=WAIT_S)
            self._busy = False
        except queue.Full:  # the sender is inside a send that does not return: the run goes on without it
            self._busy = True
            self._skipped += 1

    def close(self, *, completed: bool, interrupted: bool) -> None:
        """The stream ended (its last pictures sent, the server told); waits for the sender at most
        about a send's timeout, then leaves it (a daemon thread)."""
        try:
            self._queue.put(None, timeout=WAIT_S)  # the end, after the pictures queued
        except queue.Full:
            self._stop.set()  # a stuck send: the sender leaves after it
        self._thread.join(timeout=2 * IO_TIMEOUT_S + WAIT_S)
        if self._thread.is_alive():
            self._stop.set()
            log.warning("%s: the stream did not close within %.0f s; leaving it", self.shown,
                        2 * IO_TIMEOUT_S + WAIT_S)
        if self._down_since is not None:  # down when the run ended: the outage lasted to here
            self.down_s += time.monotonic() - self._down_since
            self._down_since = None

    def summary(self) -> dict:
        """The run summary's ``output_stream``: where, what was sent, and how long it was down."""
        return {"url": self.shown, "frames_sent": self.frames_sent, "frames_dropped": self.frames_dropped,
                "down_s": round(self.down_s, 3), "outages": self.outages, "reconnects": self.reconnects}

    # The sender's thread.

    def _send_loop(self) -> None:
        """Send what the write stage queues until the end (None) or the stop event."""
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=_TICK)
                except queue.Empty:
                    continue
                if item is None:
                    break
                self._send(*item)
            self._hang_up()
        except Exception as exc:  # not the network's (those are outages): the write stage raises it
            self._error = exc
            if self._writer is not None:
                self._writer.abandon()
                self._writer = None

    def _send(self, picture: np.ndarray, fmt: str, at: float) -> None:
        import av

        if self._size is None:
            self._size = (picture.shape[1], picture.shape[0] if fmt == "bgr" else picture.shape[0] * 2 // 3)
        now = time.monotonic()
        if self._writer is None and now < self._next_try:
            self._discarded += 1  # down: pictures go by until the next attempt
            return
        try:
            if self._writer is None:  # no I/O yet: the first picture's send connects
                self._writer = H264Writer(self.url, self.fps, self._size, self.threads, format=self.muxer,
                                          options=_MUXER_OPTIONS, live=True)
            self._writer.write(*self._fit(picture, fmt), at=at)
        except (OSError, av.error.FFmpegError, RtsegError) as exc:  # refused, reset, broken pipe, timed out
            self._discarded += 1
            self._lost(exc)
            return
        self.frames_sent += 1
        if self._down_since is not None:
            self._back()

    def _fit(self, picture: np.ndarray, fmt: str) -> tuple[np.ndarray, str]:
        """The picture at the stream's size (a view changed in the window: resized, as a file is)."""
        h = picture.shape[0] if fmt == "bgr" else picture.shape[0] * 2 // 3
        if (picture.shape[1], h) == self._size:
            return picture, fmt
        bgr = picture if fmt == "bgr" else i420_to_bgr(picture)
        return cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA), "bgr"

    def _lost(self, exc: BaseException) -> None:
        """Drop the connection and plan the next attempt (the waits of a live source's reconnects)."""
        if self._writer is not None:
            self._writer.abandon()
            self._writer = None
        now = time.monotonic()
        why = redact(getattr(exc, "strerror", None) or str(exc))
        waits = LiveSource.BACKOFF
        self._next_try = now + waits[min(self._attempt, len(waits) - 1)]
        self._attempt += 1
        if self._down_since is not None:  # one more failed attempt of this outage
            log.debug("%s: still down (%s)", self.shown, why)
            return
        self._down_since = now
        self.outages += 1
        what = "lost" if self.frames_sent else "cannot reach"
        log.warning("%s %s (%s); the run goes on, and publishing starts again when it is back", what, self.shown, why)

    def _back(self) -> None:
        down = time.monotonic() - self._down_since
        self.down_s += down
        self._down_since, self._attempt = None, 0
        self.reconnects += 1
        log.warning("%s is back after %.1f s; publishing again", self.shown, down)

    def _hang_up(self) -> None:
        """The last packets out and the server told (RTSP TEARDOWN); a server gone by now is no error."""
        import av

        if self._writer is None:
            return
        try:
            self._writer.release()
        except (OSError, av.error.FFmpegError) as exc:
            log.debug("%s: closing the stream: %s", self.shown, exc)
        self._writer = None


# Over TCP: a lost server shows as a broken connection (over UDP nothing tells the sender), and
# each connect, reply or send may take IO_TIMEOUT_S (the muxer's unit: microseconds).
_MUXER_OPTIONS = {"rtsp_transport": "tcp", "timeout": str(int(IO_TIMEOUT_S * 1e6))}
