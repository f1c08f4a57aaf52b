"""``--rerun``: a run logged to a Rerun viewer or an ``.rrd`` file (the Rerun SDK, an optional
extra: ``pip install 'rtseg[rerun]'``), to scrub through it afterwards beside a robot's other
sensors.

Each frame is logged on two timelines, ``frame`` (the source's frame number) and ``capture_time``
(the frame's capture timestamp: a wall-clock time for cameras and stamped frames, the time from
the start for a file), under these entities:

- ``video/frame``: the frame as read (JPEG, quality 90: a raw 1080p frame is 6 MB);
- ``video/classes``: the class ids at the frame's size, a segmentation image whose annotation
  context (logged once, at the root) gives each id its class name and colour; the viewer draws
  it over the frame;
- ``confidence``: the top class's probability, 0..255 (only when the run keeps class scores:
  ``--confidence``, ``--min-confidence``, ``--view confidence``);
- ``timings/<stage>``: ms the frame spent in each stage before the write (read, transform,
  infer, post, temporal when on), and ``timings/latency``: ms from capture to the write stage.

Where it goes (:func:`parse_rerun`): ``FILE.rrd``, a viewer's ``[HOST:]PORT`` or
``rerun+http://HOST:PORT/proxy`` (checked to answer before the run starts), or ``spawn`` (start a
viewer here, which needs a display).
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence
from urllib.parse import urlsplit

import cv2
import numpy as np

from rtseg.errors import MissingDependency, RtsegError
from rtseg.pipeline.packet import Packet
from rtseg.pipeline.runner import Sink

__all__ = ["RerunTarget", "RerunSink", "rerun_sink", "parse_rerun", "require_rerun", "MIN_VERSION"]

log = logging.getLogger(__name__)

MIN_VERSION = (0, 23)  # rr.set_time(...) and rr.Scalars: the API this module calls (pyproject's extra says the same)
VIEWER_PORT = 9876  # the Rerun viewer's own default gRPC port
CONNECT_TIMEOUT = 3.0  # s: a viewer's address must answer within this before the run starts
WALL_CLOCK_AFTER = 1e9  # s since 1970 (2001-09-09): a capture time past this is a wall-clock time, else one from the start
JPEG_QUALITY = 90
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and an empty SETTINGS frame
_ALLOWED = ("use FILE.rrd, [HOST:]PORT of a running viewer (its default port is 9876), "
            "rerun+http://HOST:PORT/proxy, or spawn (start a viewer here)")


@dataclass(frozen=True)
class RerunTarget:
    """Where ``--rerun`` sends the run: ``kind`` "file" (``where``: the .rrd path), "viewer"
    (``where``: its gRPC URL, ``host``, ``port``) or "spawn" (a viewer started on ``port``);
    ``given``: as the user wrote it, for messages."""

    kind: str
    where: str
    host: str = "127.0.0.1"
    port: int = VIEWER_PORT
    given: str = ""

    def describe(self) -> str:
        return {"file": self.where, "viewer": f"the Rerun viewer at {self.where}",
                "spawn": f"a Rerun viewer started on port {self.port}"}[self.kind]


def parse_rerun(text: str) -> RerunTarget:
    """``--rerun`` as written -> where it goes; one line naming --rerun when it is neither."""
    value = str(text).strip()
    if value.lower().endswith(".rrd"):
        return RerunTarget("file", value, given=value)
    if value.lower() == "spawn":
        return RerunTarget("spawn", f"rerun+http://127.0.0.1:{VIEWER_PORT}/proxy", given=value)
    if "://" in value:
        parts = urlsplit(value)
        try:
            port = parts.port or VIEWER_PORT
        except ValueError:  # a port that is not a number, or past 65535
            port = -1
        if parts.scheme not in ("rerun+http", "rerun+https", "rerun") or not parts.hostname or port < 0:
            raise RtsegError(f"--rerun {value!r} is not allowed; {_ALLOWED}")
        return RerunTarget("viewer", value, parts.hostname, port, given=value)
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise RtsegError(f"--rerun {value!r} is not allowed; {_ALLOWED}")
    where = f"[{host}]" if ":" in host else host  # an IPv6 address in brackets
    return RerunTarget("viewer", f"rerun+http://{where}:{port}/proxy", host, int(port), given=value)


def require_rerun() -> ModuleType:
    """The Rerun SDK, or a one-line error saying how to install it (or a newer one)."""
    try:
        import rerun
    except ImportError:
        raise MissingDependency("--rerun needs the Rerun SDK: pip install 'rtseg[rerun]'") from None
    version = getattr(rerun, "__version__", "0")
    numbers = tuple(int(n) if n.isdigit() else 0 for n in version.split(".")[:2])
    if numbers < MIN_VERSION:
        raise MissingDependency(f"--rerun needs the Rerun SDK {'.'.join(map(str, MIN_VERSION))} or newer (this is "
                                f"{version}): pip install -U 'rtseg[rerun]'")
    return rerun


def _check_answers(target: RerunTarget) -> None:
    """A viewer's address must answer now, as a gRPC (HTTP/2) server does: else the SDK would retry
    quietly for seconds and drop what it could not send, or, where something that is not a viewer
    holds the port, wait for it without end when the run closes. Plain rerun+http gets the
    HTTP/2 greeting and must answer with its settings; over TLS a connection is all that is
    checked."""
    why = None
    try:
        with socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT) as conn:
            if target.where.startswith("rerun+http://"):
                conn.sendall(_HTTP2_PREFACE)
                reply = conn.recv(9)  # a frame header: length (3 bytes), type (1), flags, stream
                if len(reply) < 4 or reply[3] != 4:  # 4: SETTINGS, what every HTTP/2 server sends first
                    why = "something answers, but not as a Rerun viewer does"
    except OSError as exc:
        why = f"{exc.strerror or exc}".lower()
    if why is None:
        return
    if target.kind == "spawn":
        raise RtsegError(f"--rerun spawn: the viewer it started does not answer on port {target.port} ({why}); "
                         "save a file instead (--rerun run.rrd)")
    raise RtsegError(f"--rerun {target.given}: no Rerun viewer there ({why}); start one with: rerun, or use "
                     "--rerun spawn, or --rerun run.rrd to save a file")


def _has_display() -> bool:
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class RerunSink(Sink):
    """Logs each frame, its class map, its confidence (when kept) and its stage times to Rerun
    (see the module's docstring), on the frame's capture time; the annotation context gives the
    class ids their names and colours. Made before the run's other outputs: a viewer that does
    not answer, or a folder that does not exist, refuses the run before any file is written."""

    takes_i420 = True  # it logs the frame and the ids, not the drawn picture

    def __init__(self, target: RerunTarget, class_names: Sequence[str], palette: Sequence[Sequence[int]], *,
                 name: str = "rtseg", unknown: bool = False):
        rr = require_rerun()
        self.rr, self.target, self.frames = rr, target, 0
        self._wall_clock: bool | None = None  # decided on the first timestamp: wall clock, or time from the start
        self.rec = rr.RecordingStream("rtseg")
        try:
            self._connect()
        except RuntimeError as exc:  # what the SDK raises when it cannot open its sink
            raise RtsegError(f"--rerun {target.given}: {exc}") from None
        self.rec.send_recording_name(name)  # the viewer lists the recording by the source's name
        infos = [rr.AnnotationInfo(id=i, label=n, color=tuple(palette[i])) for i, n in enumerate(class_names)]
        if unknown and len(class_names) < 256:  # --min-confidence paints unsure pixels 255
            infos.append(rr.AnnotationInfo(id=255, label="unknown", color=(0, 0, 0)))
        self.rec.log("/", rr.AnnotationContext(infos), static=True)

    def _connect(self) -> None:
        target = self.target
        if target.kind == "file":
            folder = Path(target.where).parent
            if not folder.is_dir():
                raise RtsegError(f"--rerun {target.where}: folder {folder} does not exist")
            self.rec.save(target.where)
        elif target.kind == "spawn":
            if not _has_display():
                raise RtsegError("--rerun spawn opens a viewer window and this session has no display (DISPLAY and "
                                 "WAYLAND_DISPLAY are unset); save a file (--rerun run.rrd) or send the run to a viewer "
                                 "elsewhere (--rerun HOST:9876)")
            self.rec.spawn(port=target.port)  # or connects to a viewer already there
            _check_answers(target)
        else:
            _check_answers(target)
            self.rec.connect_grpc(target.where)

    def _set_time(self, packet: Packet) -> None:
        rec = self.rec
        rec.set_time("frame", sequence=packet.source_index if packet.source_index is not None else packet.index)
        t = packet.timestamp
        if t is None:
            return
        if self._wall_clock is None:  # one kind for the whole run: a Rerun timeline has one type
            self._wall_clock = t >= WALL_CLOCK_AFTER
        if self._wall_clock:
            rec.set_time("capture_time", timestamp=t)
        else:
            rec.set_time("capture_time", duration=t)

    def write(self, packet: Packet) -> None:
        rr, rec = self.rr, self.rec
        self._set_time(packet)
        ok, jpeg = cv2.imencode(".jpg", packet.frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if ok:
            rec.log("video/frame", rr.EncodedImage(contents=jpeg.tobytes(), media_type="image/jpeg"))
        rec.log("video/classes", rr.SegmentationImage(packet.frame_ids()))
        if packet.probs is not None:
            level = np.clip(packet.confidence() * 255.0 + 0.5, 0, 255).astype(np.uint8)
            rec.log("confidence", rr.Image(level))
        for stage, ms in packet.timings.items():
            rec.log(f"timings/{stage}", rr.Scalars(ms))
        start = packet.t_capture if packet.t_capture is not None else packet.t_read
        rec.log("timings/latency", rr.Scalars((time.perf_counter() - start) * 1e3))
        self.frames += 1

    def close(self, *, completed: bool, interrupted: bool) -> None:
        """What is buffered reaches the file or the viewer (an interrupted run's too), then the
        stream ends (a file gets its footer). A viewer that went away is a warning: the run's
        other outputs are whole; a file that could not be written is an error."""
        try:
            self.rec.flush()
        except RuntimeError as exc:
            if self.target.kind == "file":
                raise RtsegError(f"--rerun {self.target.given}: cannot write it ({exc})") from None
            log.warning("--rerun %s: %s; the viewer may be missing the last frames", self.target.given, exc)
        finally:
            self.rec.disconnect()

    def report(self) -> str:
        """The line the run's report prints."""
        if self.target.kind == "file":
            return f"wrote {self.target.where} (Rerun recording, {self.frames} frames)"
        return f"logged {self.frames} frames to {self.target.describe()}"


def rerun_sink(rerun: str, meta: Any, *, name: str, min_confidence: float = 0.0) -> RerunSink:
    """``--rerun``'s sink for a run of an engine with ``meta`` (class names and palette)."""
    return RerunSink(parse_rerun(rerun), meta.class_names, meta.palette, name=name, unknown=min_confidence > 0)
