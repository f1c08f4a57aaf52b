"""Watch a run from another machine: ``--serve [HOST:]PORT`` (``serve=`` in ``rtseg.stream``); what
the viewers see (this module) and the server (:mod:`rtseg.pipeline.live_server`).

A small HTTP server, started with the run and stopped with it, in threads of its own:

- ``/``: one page (no plugins, no build step): the live overlay, the legend, source, runtime and
  precision, fps and latency now, progress, a live chart of the class shares, and buttons for what
  the window's keys do (view, alpha, legend, pause);
- ``/stream.mjpg``: the overlay as MJPEG (``multipart/x-mixed-replace``): every browser shows it
  in an ``<img>`` with no script, and ``curl``/``ffplay``/VLC read it too (a WebSocket would need a
  script on the page and a handshake of its own for what one image tag does);
- ``/snapshot.jpg``: the newest overlay; ``/stats.json``: the page's figures; ``/metrics``: the
  same in Prometheus' text format (``rtseg_*``).

It never slows the pipeline: the write stage only keeps a reference to the newest packet. A frame
is JPEG-encoded at most once, and only while someone is watching (on a viewer's thread); every
viewer gets the newest frame and skips the ones it was too slow for (nothing queues); a stalled or
silent client is dropped after a timeout; viewers past a limit get 503.

Safe by default: 127.0.0.1 unless a host is given; any other bind needs a token (printed in the
URL, as Jupyter does; ``--serve-token`` to choose it), and a request without it gets 401 and no
frame data. Only the page itself is served, no file from disk; unknown paths 404; request lines,
headers and bodies are size-limited.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from rtseg.errors import RtsegError
from rtseg.pipeline.packet import Look, Packet
from rtseg.viz import VIEWS, Legend, draw, i420_to_bgr, palette_lut

__all__ = ["parse_serve", "LiveState", "MAX_VIEWERS", "CLIENT_TIMEOUT", "MAX_BODY", "VIEW_FPS"]

MAX_VIEWERS = 64  # streams at once; more get 503
VIEW_FPS = 30.0  # at most this many frames a second to each viewer: a view needs no more, and each costs a JPEG
CLIENT_TIMEOUT = 10.0  # s a client may stay silent or stalled (a slowloris, a half-open socket)
MAX_BODY = 1024  # bytes of a control request's body
JPEG_QUALITY = 80


def parse_serve(text: str | int) -> tuple[str, int]:
    """``--serve [HOST:]PORT`` -> (host, port); 127.0.0.1 when no host is given; port 0: any free one."""
    value = str(text).strip()
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise RtsegError(f"--serve {text!r} is not allowed; use PORT or HOST:PORT (e.g. 8080, 0.0.0.0:8080; 0: any "
                         "free port)")
    return host, number


@dataclass
class _Frame:
    packet: Packet
    number: int  # its place in what the viewers were shown (a control redraw counts too)
    jpeg: bytes | None = None  # encoded when first asked, once


class LiveState:
    """What the write stage leaves for the viewers (the newest frame and the run's figures), and
    the viewers' own look (their buttons change it; the files being written keep theirs)."""

    def __init__(self, *, meta: Any, describe: dict[str, Any], look: Look, live: bool, total: int | None):
        self.meta, self.describe, self.live, self.total = meta, describe, live, total
        self.look = Look(view=look.view, alpha=look.alpha, legend=look.legend)
        self.lut = palette_lut(meta.palette)
        self.legend = Legend(meta.class_names, meta.palette)
        self.cond = threading.Condition()
        self.frame: _Frame | None = None
        self.frames = self.dropped = self.outages = self.reconnects = 0
        self.seq = 0  # numbers the frames shown (new frames and redraws), so a viewer never misses one
        self.fps = self.latency_ms = 0.0
        self._last_ids: np.ndarray | None = None
        self.paused = self.ended = False
        self.viewers = 0
        self.encoded = 0  # JPEG encodes, for the test that each frame is encoded at most once
        self._encode_lock = threading.Lock()
        self._encoded_frame: _Frame | None = None  # the newest frame encoded, and when: shared within a tick
        self._encoded_at = 0.0
        self._t_last: float | None = None

    def put(self, packet: Packet, *, dropped: int, outages: int, reconnects: int) -> None:
        """From the write stage: keep a reference, count, and wake the viewers. Nothing is encoded here."""
        now = time.perf_counter()
        with self.cond:
            self.frames += 1
            if self._t_last is not None:
                dt = max(now - self._t_last, 1e-6)
                self.fps = 1.0 / dt if self.fps == 0 else 0.9 * self.fps + 0.1 / dt
            self._t_last = now
            start = packet.t_capture if packet.t_capture is not None else packet.t_read
            self.latency_ms = (now - start) * 1e3
            self._last_ids = packet.ids  # the class shares are counted when asked (stats.json), not per frame
            self.dropped, self.outages, self.reconnects = dropped, outages, reconnects
            if not self.paused:
                self.seq += 1
                self.frame = _Frame(packet, self.seq)
            self.cond.notify_all()

    def end(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def jpeg(self, frame: _Frame) -> bytes:
        """The frame's overlay as JPEG, encoded once (by whichever viewer asks first)."""
        with self._encode_lock:
            if frame.jpeg is None:
                p, look = frame.packet, self.look.key()
                if p.picture is not None and (p.look == look or look[0] not in VIEWS):
                    # as the post stage drew it (the confidence view: always, from the probabilities)
                    picture = i420_to_bgr(p.picture) if p.picture_format == "i420" else p.picture
                else:
                    picture, _ = draw(p.frame, p.ids, look[0], look[1], lut=self.lut,
                                      legend=self.legend if look[2] else None)
                ok, buf = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                frame.jpeg = buf.tobytes() if ok else b""
                self.encoded += 1
                self._encoded_frame, self._encoded_at = frame, time.perf_counter()
            return frame.jpeg

    def next_frame(self, after: int, timeout: float) -> _Frame | None:
        """The newest frame after number ``after`` (waiting up to ``timeout``), None when there is none.
        Within one tick of VIEW_FPS, the frame already encoded for another viewer when it is newer than
        ``after``: viewers that wake together share a JPEG, so the encodes a second stay at VIEW_FPS
        however many watch, and the run's frames in between are never encoded."""
        with self.cond:
            self.cond.wait_for(lambda: (self.frame is not None and self.frame.number > after) or self.ended,
                               timeout=timeout)
            if self.frame is None or self.frame.number <= after:
                return None
            shared = self._encoded_frame
            if (shared is not None and shared.number > after
                    and time.perf_counter() - self._encoded_at < 1.0 / VIEW_FPS):
                return shared
            return self.frame

    def shares(self) -> np.ndarray:
        ids, n = self._last_ids, self.meta.num_classes
        if ids is None:
            return np.zeros(n)
        return np.bincount(ids.ravel(), minlength=256)[:n] / max(1, ids.size)

    def stats(self) -> dict[str, Any]:
        shares = self.shares()
        with self.cond:
            names, palette = self.meta.class_names, self.meta.palette
            return {**self.describe, "frames": self.frames, "total": self.total, "live": self.live,
                    "fps": round(self.fps, 2), "latency_ms": round(self.latency_ms, 1), "dropped": self.dropped,
                    "outages": self.outages, "reconnects": self.reconnects, "viewers": self.viewers,
                    "paused": self.paused, "ended": self.ended,
                    "look": {"view": self.look.view, "alpha": self.look.alpha, "legend": self.look.legend},
                    "classes": [{"name": n, "rgb": list(c), "share": round(float(s), 4)}
                                for n, c, s in zip(names, palette, shares)]}

    def metrics(self) -> str:
        s = self.stats()
        rows = [("rtseg_frames_total", "counter", "Frames written", s["frames"]),
                ("rtseg_fps", "gauge", "Frames per second now", s["fps"]),
                ("rtseg_latency_ms", "gauge", "Capture (or read) to written, last frame, ms", s["latency_ms"]),
                ("rtseg_dropped_total", "counter", "Stale frames a live source skipped", s["dropped"]),
                ("rtseg_outages_total", "counter", "Times a live source was lost", s["outages"]),
                ("rtseg_reconnects_total", "counter", "Times it came back", s["reconnects"]),
                ("rtseg_viewers", "gauge", "Viewers of the MJPEG stream now", s["viewers"]),
                ("rtseg_jpeg_encodes_total", "counter", "Frames JPEG-encoded for the viewers", self.encoded)]
        return "".join(f"# HELP {n} {h}\n# TYPE {n} {t}\n{n} {v}\n" for n, t, h, v in rows)

    def control(self, query: dict[str, str]) -> None:
        """A button: view, alpha, legend, pause (the window's keys)."""
        with self.cond:
            if "view" in query:
                Look(view=query["view"], alpha=self.look.alpha)  # a bad value: one line, 400
                self.look.view = query["view"]
            if "alpha" in query:
                alpha = float(query["alpha"])
                Look(view=self.look.view, alpha=alpha)
                self.look.alpha = alpha
            if "legend" in query:
                self.look.legend = query["legend"] in ("1", "on", "true")
            if "pause" in query:
                self.paused = query["pause"] in ("1", "on", "true")
            if self.frame is not None:  # redraw the frame on show with the new look
                self.seq += 1
                self.frame = _Frame(self.frame.packet, self.seq)
            self.cond.notify_all()
