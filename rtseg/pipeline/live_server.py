"""The HTTP side of ``--serve`` (see :mod:`rtseg.pipeline.live_view`): a threading server whose
request threads read :class:`~rtseg.pipeline.live_view.LiveState`, and :class:`ServeSink`, the
write-stage sink that feeds it and starts and stops the server with the run."""
from __future__ import annotations

import hmac
import json
import logging
import math
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from rtseg.errors import RtsegError
from rtseg.pipeline.live_page import PAGE
from rtseg.pipeline.live_view import CLIENT_TIMEOUT, MAX_BODY, MAX_VIEWERS, VIEW_FPS, LiveState, parse_serve
from rtseg.pipeline.packet import Packet
from rtseg.pipeline.runner import Sink

__all__ = ["ServeSink", "LiveServer", "BOUNDARY"]

log = logging.getLogger(__name__)

BOUNDARY = "rtsegframe"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Handler(BaseHTTPRequestHandler):
    server: "LiveServer"
    timeout = CLIENT_TIMEOUT  # a client silent this long (sending nothing, or reading nothing) is dropped
    protocol_version = "HTTP/1.0"
    server_version = "rtseg"
    sys_version = ""

    def log_message(self, *args: Any) -> None:  # quiet: the run's own output stays readable
        pass

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _allowed(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self._query().get("token") or self.headers.get("X-Rtseg-Token", "")
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
        self._send(401, b"401: this rtseg run needs its token (?token=... in the URL it printed)\n", "text/plain")
        return False

    def _send(self, code: int, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._allowed():
            return
        path, state = urlsplit(self.path).path, self.server.state
        if path == "/":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/stats.json":
            self._send(200, json.dumps(state.stats()).encode(), "application/json")
        elif path == "/metrics":
            self._send(200, state.metrics().encode(), "text/plain; version=0.0.4")
        elif path == "/snapshot.jpg":
            frame = state.next_frame(0, timeout=CLIENT_TIMEOUT)
            if frame is None:
                self._send(503, b"503: no frame yet\n", "text/plain")
            else:
                self._send(200, state.jpeg(frame), "image/jpeg")
        elif path == "/stream.mjpg":
            self._stream(state)
        else:
            self._send(404, b"404\n", "text/plain")

    def do_POST(self) -> None:
        if not self._allowed():
            return
        if urlsplit(self.path).path != "/control":
            self._send(404, b"404\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, b"413\n", "text/plain")
            return
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        query = {**self._query(), **{k: v[-1] for k, v in parse_qs(body).items()}}
        try:
            self.server.state.control(query)
        except (RtsegError, ValueError) as exc:
            self._send(400, f"400: {exc}\n".encode(), "text/plain")
            return
        self._send(200, json.dumps(self.server.state.stats()["look"]).encode(), "application/json")

    def _stream(self, state: LiveState) -> None:
        with state.cond:
            if state.viewers >= MAX_VIEWERS:
                full = True
            else:
                full, state.viewers = False, state.viewers + 1
        if full:
            self._send(503, b"503: too many viewers\n", "text/plain")
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            shown, sent = 0, 0.0
            while not self.server.stopping.is_set():
                # At most VIEW_FPS a viewer, the frames in between skipped, never queued; on one clock's
                # ticks for every viewer, so that they wake together and share one JPEG (next_frame).
                now = time.perf_counter()
                tick = (math.floor(max(now, sent + 0.5 / VIEW_FPS) * VIEW_FPS) + 1) / VIEW_FPS
                self.server.stopping.wait(tick - now)
                frame = state.next_frame(shown, timeout=0.5)  # the newest: a slow viewer skips frames, never queues
                if frame is None:
                    if state.ended:
                        break
                    continue
                shown, sent = frame.number, time.perf_counter()
                jpg = state.jpeg(frame)
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n"
                                 .encode() + jpg + b"\r\n")
        except (OSError, ValueError):  # the viewer left, or stalled past the timeout
            pass
        finally:
            with state.cond:
                state.viewers -= 1


class LiveServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never holds the process
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], state: LiveState, token: str | None):
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)
        self.state, self.token, self.stopping = state, token, threading.Event()

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="rtseg-serve",
                         daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.state.end()
        self.shutdown()
        self.server_close()


class ServeSink(Sink):
    """The write stage's side of ``--serve``: keeps the newest packet for the viewers (no encoding
    here), starts the server when made and stops it when closed (``linger`` seconds later for a
    file, so the last frame and the summary can be read)."""

    takes_i420 = True  # the viewers convert what they show themselves

    def __init__(self, address: str | int, state: LiveState, source: Any, *, token: str | None = None,
                 linger: float = 0.0, say: Callable[[str], None] | None = None):
        host, port = parse_serve(address)
        loopback = host in _LOOPBACK
        self.token = token or (None if loopback else secrets.token_urlsafe(16))
        try:
            self.server = LiveServer((host, port), state, self.token)
        except OSError as exc:
            raise RtsegError(f"--serve {address}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self.state, self.source, self.linger = state, source, linger
        shown_host = f"[{host}]" if ":" in host else ("<this machine's address>" if host in ("0.0.0.0", "") else host)
        self.url = f"http://{shown_host}:{self.server.server_address[1]}/" + (f"?token={self.token}" if self.token else "")
        self.server.start()
        if say is not None:
            say(f"serving the live view at {self.url}" + ("" if loopback else " (the token is needed)"))

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def write(self, packet: Packet) -> None:
        src = self.source
        self.state.put(packet, dropped=src.dropped, outages=src.outages, reconnects=src.reconnects)

    def close(self, *, completed: bool, interrupted: bool) -> None:
        self.state.end()
        if completed and not interrupted and self.linger > 0:
            time.sleep(self.linger)  # the last frame and the summary stay up
        self.server.stop()
