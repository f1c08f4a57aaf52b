"""--serve: the live view over HTTP, on 127.0.0.1 only. The page, the MJPEG stream, a snapshot, the
stats and the metrics; the token; unknown paths; and hostile clients (silent, slow, many at once)
that must not change what the run writes or how it ends. Each frame is encoded once at most,
whatever the number of viewers."""
from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_fakes import FakeEngine, ListSource, RecordingSink, fake_run  # noqa: E402

from rtseg.errors import RtsegError  # noqa: E402
from rtseg.pipeline.app import segment  # noqa: E402
from rtseg.pipeline.live_view import parse_serve  # noqa: E402


class _Paced(ListSource):
    """``n`` frames at ``fps``, as a camera or a slow decoder would give them."""

    def __init__(self, n: int, fps: float = 40.0, size=(48, 64)):
        super().__init__(n, size=size, fps=fps)
        self.wait = 1.0 / fps

    def read(self, stop=None):
        time.sleep(self.wait)
        return super().read(stop)


def _serve(n: int = 60, fps: float = 40.0, **outputs):
    """A run in a thread with --serve on a free port: (thread, result holder, url base, written)."""
    said, holder = [], {}
    run = fake_run(_Paced(n, fps), FakeEngine(), outputs={"serve": "127.0.0.1:0", **outputs})
    sink = RecordingSink()

    def go():
        holder["written"] = segment(run, sink, say=said.append)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not said and time.monotonic() < deadline:
        time.sleep(0.01)
    assert said, "the server said nothing"
    url = said[0].split(" at ", 1)[1].split(" ")[0]
    return t, holder, url.split("?")[0], sink, said


def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def test_parse_serve():
    assert parse_serve("8080") == ("127.0.0.1", 8080) and parse_serve("0.0.0.0:0") == ("0.0.0.0", 0)
    assert parse_serve("[::1]:9000") == ("::1", 9000)
    with pytest.raises(RtsegError, match="--serve 'http' is not allowed; use PORT or HOST:PORT"):
        parse_serve("http")


def test_the_page_stats_snapshot_metrics_and_stream():
    t, holder, base, sink, said = _serve()
    status, kind, page = _get(base)
    assert status == 200 and kind.startswith("text/html") and b"rtseg live" in page and b"stream.mjpg" in page
    stats = json.loads(_get(base + "stats.json")[2])
    assert stats["runtime"] == "fake" and stats["total"] == 60 and len(stats["classes"]) == FakeEngine().meta.num_classes
    status, kind, jpg = _get(base + "snapshot.jpg")
    picture = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert kind == "image/jpeg" and picture.shape == (48, 64, 3)
    metrics = _get(base + "metrics")[2].decode()
    assert "# TYPE rtseg_frames_total counter" in metrics and "rtseg_fps " in metrics
    with urllib.request.urlopen(base + "stream.mjpg", timeout=5) as r:
        head = r.read(400)
    assert r.headers.get("Content-Type").startswith("multipart/x-mixed-replace") and b"image/jpeg" in head
    for bad in ("nope", "../etc/passwd", "%2e%2e/etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as info:
            _get(base + bad)
        assert info.value.code == 404
    t.join(timeout=30)
    assert holder["written"].result.frames == 60 and len(sink.seen) == 60


def test_the_token_is_needed_where_one_is_set():
    t, holder, base, sink, said = _serve(serve_token="s3cret")
    assert "?token=s3cret" in said[0]
    for path in ("", "stats.json", "snapshot.jpg", "stream.mjpg", "metrics"):
        with pytest.raises(urllib.error.HTTPError) as info:
            _get(base + path)
        assert info.value.code == 401 and b"image" not in info.value.read()
    assert _get(base + "stats.json?token=s3cret")[0] == 200
    with pytest.raises(urllib.error.HTTPError):
        _get(base + "stats.json?token=wrong")
    t.join(timeout=30)


def test_buttons_change_the_viewers_look_only():
    t, holder, base, sink, said = _serve()
    req = urllib.request.Request(base + "control", data=b"view=side-by-side&alpha=0.8&legend=0", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.loads(r.read()) == {"view": "side-by-side", "alpha": 0.8, "legend": False}
    jpg = _get(base + "snapshot.jpg")[2]
    assert cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR).shape == (48, 128, 3)  # side by side
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(base + "control", data=b"view=x-ray", method="POST"), timeout=5)
    assert info.value.code == 400
    t.join(timeout=30)
    assert all(look is None or look[0] == "overlay" for look in [p.look for p in sink.packets])  # the run's own look


@pytest.mark.slow
def test_hostile_clients_change_nothing_the_run_does():
    """Silent connections (slowloris), 200 connections at once, a viewer reading a byte a second
    and three normal viewers: the run writes every frame and ends as without --serve; every viewer
    gets frames; no frame is encoded twice."""
    t, holder, base, sink, said = _serve(n=240, fps=40.0)  # 6 s of frames
    host, port = base.split("//")[1].rstrip("/").split(":")
    slow = socket.create_connection((host, int(port)))
    slow.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
    slow.recv(1)
    silent = [socket.create_connection((host, int(port))) for _ in range(20)]
    crowd = []
    for _ in range(200):
        try:
            crowd.append(socket.create_connection((host, int(port)), timeout=2))
        except OSError:
            pass
    got: list[int] = []

    def viewer():
        with urllib.request.urlopen(base + "stream.mjpg", timeout=10) as r:
            got.append(r.read(20000).count(b"--rtsegframe"))

    viewers = [threading.Thread(target=viewer) for _ in range(3)]
    for v in viewers:
        v.start()
    t.join(timeout=60)
    for v in viewers:
        v.join(timeout=20)
    for s in silent + crowd + [slow]:
        s.close()
    assert not t.is_alive() and holder["written"].result.frames == 240 and len(sink.seen) == 240
    assert holder["written"].result.completed
    assert len(got) == 3 and all(n >= 1 for n in got)
    state = holder["written"].serve.state
    assert state.encoded <= state.seq  # each frame shown encoded once at most, for every viewer


def test_viewers_share_their_jpegs_so_the_encodes_stay_at_the_view_rate():
    """10 viewers of a run at 120 fps: they wake on one clock's ticks and share each tick's JPEG,
    so about VIEW_FPS frames a second are encoded, not one a viewer (nor every frame)."""
    from rtseg.pipeline.live_view import VIEW_FPS

    t, holder, base, sink, said = _serve(n=240, fps=120.0)  # 2 s of frames
    got: list[int] = []

    def viewer():
        with urllib.request.urlopen(base + "stream.mjpg", timeout=10) as r:
            got.append(r.read().count(b"--rtsegframe"))

    viewers = [threading.Thread(target=viewer) for _ in range(10)]
    started = time.perf_counter()
    for v in viewers:
        v.start()
    t.join(timeout=60)
    elapsed = time.perf_counter() - started
    for v in viewers:
        v.join(timeout=20)
    state = holder["written"].serve.state
    assert len(got) == 10 and min(got) >= 10  # every viewer was fed
    assert state.encoded <= VIEW_FPS * elapsed * 1.5 + 5  # one tick's JPEG for all, not one each
    assert state.encoded < 0.6 * 240 and state.encoded < 0.5 * sum(got)


def test_a_port_in_use_is_one_line_before_any_output_file(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    source = _Paced(5)
    run = fake_run(source, FakeEngine(), outputs={"serve": f"127.0.0.1:{port}", "output": tmp_path / "o.mp4"})
    with pytest.raises(RtsegError, match=f"--serve 127.0.0.1:{port}: cannot listen on 127.0.0.1:{port}"):
        segment(run)
    busy.close()
    assert not list(tmp_path.iterdir()) and source.closed  # nothing written, the source let go
