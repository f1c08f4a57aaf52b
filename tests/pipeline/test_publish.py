"""``-o rtsp://HOST:PORT/PATH`` (rtseg/pipeline/publish.py): the overlay published as H.264 to an
RTSP server. The server here is PyAV itself listening on 127.0.0.1 (``rtsp_flags=listen``, as
``ffplay -rtsp_flags listen`` does), in a thread: it takes one publisher, decodes what it sends
and records each frame's size. Every wait has a timeout; receivers are daemon threads joined at
the end of each test."""
from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.pipeline import publish
from rtseg.pipeline.publish import StreamSink, check_stream_url
from rtseg.pipeline.spec import Outputs, RunSpec

av = pytest.importorskip("av")
FAKES = Path(__file__).resolve().parent
sys.path.insert(0, str(FAKES))
from pipeline_fakes import count_frames  # noqa: E402
from tests.conftest import run_main  # noqa: E402

DEMO_FRAMES, DEMO_SIZE = 101, (480, 360)  # the bundled demo clip: frames, (w, h)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (Linux's socket table: connecting to find
    out would be the one connection an FFmpeg listener takes)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return True  # no table to read: the caller's own wait is all there is
    return any(f.split()[1].endswith(f":{port:04X}") and f.split()[3] == "0A" for f in lines)


class Receiver:
    """An RTSP server for one publisher on 127.0.0.1:``port``: the frames' sizes it decoded.
    ``stop_after``: hang up after that many frames (the server going away)."""

    def __init__(self, port: int, *, stop_after: int | None = None, wait_s: float = 30.0):
        self.url = f"rtsp://127.0.0.1:{port}/seg"
        self.sizes: list[tuple[int, int]] = []
        self.error: BaseException | None = None
        self.stop_after, self.wait_s = stop_after, wait_s
        self.thread = threading.Thread(target=self._receive, name=f"receiver-{port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not listening(port) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert listening(port), f"the receiver does not listen on {port}"

    def _receive(self) -> None:
        # No PyAV timeout= here: its interrupt callback takes the GIL, which the publisher holds
        # while it connects (a deadlock); listen_timeout is FFmpeg's own, in seconds.
        try:
            with av.open(self.url, options={"rtsp_flags": "listen", "listen_timeout": str(int(self.wait_s))}) as c:
                for frame in c.decode(video=0):
                    self.sizes.append((frame.width, frame.height))
                    if self.stop_after is not None and len(self.sizes) >= self.stop_after:
                        return
        except (av.error.FFmpegError, OSError) as exc:  # the end of a stream may come as an error
            self.error = exc

    def join(self, timeout: float = 20.0) -> "Receiver":
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the receiver did not finish"
        return self


def packet(i: int, size=(48, 64)) -> SimpleNamespace:
    """What StreamSink reads of a packet: a BGR picture."""
    return SimpleNamespace(picture=np.full((*size, 3), (7 * i) % 256, np.uint8), picture_format="bgr")


def _write_until(sink, done, i: int, deadline: float, pause: float) -> int:
    """Write pictures i, i+1, ... ``pause`` s apart until ``done()`` or ``deadline``; the next i."""
    while not done() and time.monotonic() < deadline:
        sink.write(packet(i))
        i += 1
        time.sleep(pause)
    return i


# URLs and -o.

@pytest.mark.parametrize("url", ["rtsp://127.0.0.1:8554/seg", "rtsp://user:pw@cam.local/live/seg", "RTSP://h/x"])
def test_an_rtsp_url_is_taken(url):
    assert check_stream_url(url) == "rtsp"


@pytest.mark.parametrize("url, message", [
    ("rtmp://h/live/x", "rtmp:// is not supported (PyAV opens RTMP connections with no timeout"),
    ("srt://h:9000", "srt:// is not supported (PyAV's FFmpeg has no SRT)"),
    ("http://h/x.mp4", "a http:// URL cannot be published to; use rtsp://HOST:PORT/PATH"),
    ("rtsp://:8554/seg", "no host"),
    ("rtsp://h:8554", "no path naming the stream"),
    ("rtsp://h:8554/", "no path naming the stream"),
    ("rtsp://h:port/x", "the port is not a number"),
    ("rtsp://h:99999/x", "the port is not a number"),
])
def test_a_bad_url_is_one_line(url, message):
    with pytest.raises(RtsegError) as caught:
        Outputs(output=url)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("--output ")


def test_o_given_twice_is_a_file_and_a_stream():
    o = RunSpec.from_options(output=["out.mp4", "rtsp://127.0.0.1:8554/seg"]).outputs
    assert (o.output, o.stream) == ("out.mp4", "rtsp://127.0.0.1:8554/seg")
    assert (Outputs(output="rtsp://h/x").output, Outputs(output=["o.mp4"]).stream) == (None, None)
    for twice in (["a.mp4", "b.mp4"], ["rtsp://h/a", "rtsp://h/b"]):
        with pytest.raises(RtsegError, match="given twice for the same kind of output"):
            Outputs(output=twice)


def test_credentials_never_show(monkeypatch):
    with pytest.raises(RtsegError) as caught:
        Outputs(output="rtmp://admin:hunter2@h/live/x")
    assert "hunter2" not in str(caught.value)
    sink = StreamSink("rtsp://admin:hunter2@127.0.0.1:1/seg", 10)
    sink.close(completed=True, interrupted=False)
    assert "hunter2" not in json.dumps(sink.summary())


# The sink on its own.

def test_the_sink_publishes_every_picture_at_its_size():
    rx = Receiver(free_port())
    sink = StreamSink(rx.url, 25)
    for i in range(40):
        sink.write(packet(i))
    sink.close(completed=True, interrupted=False)
    rx.join()
    assert rx.sizes == [(64, 48)] * 40
    assert sink.summary()["frames_sent"] == 40 and sink.outages == 0 and sink.down_s == 0


def test_a_server_that_comes_later_is_published_to_once_it_is_there(caplog):
    port = free_port()
    sink = StreamSink(f"rtsp://127.0.0.1:{port}/seg", 25)
    for i in range(5):  # nobody listens: refused, and the run goes on
        sink.write(packet(i))
        time.sleep(0.02)
    rx = Receiver(port)
    i = _write_until(sink, lambda: sink.reconnects > 0, 5, time.monotonic() + 15, 0.02)  # next attempt: 0.5 s on
    for j in range(10):
        sink.write(packet(i + j))
    sink.close(completed=True, interrupted=False)
    rx.join()
    s = sink.summary()
    assert (s["outages"], s["reconnects"]) == (1, 1) and s["down_s"] > 0.3
    assert len(rx.sizes) == s["frames_sent"] >= 10 and s["frames_dropped"] >= 5
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith(f"cannot reach {rx.url} (Connection refused); the run goes on") for m in said), said
    assert any(m.startswith(f"{rx.url} is back after ") for m in said), said


def test_a_lost_server_is_published_to_again_when_it_is_back():
    port = free_port()
    first = Receiver(port, stop_after=10)
    sink = StreamSink(first.url, 25)
    deadline = time.monotonic() + 20
    i = _write_until(sink, lambda: sink.outages > 0, 0, deadline, 0.01)  # until the sender sees the server gone
    first.join()
    second = Receiver(port)
    i = _write_until(sink, lambda: sink.reconnects > 0, i, deadline, 0.01)
    for j in range(10):
        sink.write(packet(i + j))
    sink.close(completed=True, interrupted=False)
    second.join()
    assert len(first.sizes) == 10 and len(second.sizes) >= 10  # the second stream starts at a keyframe: it decodes
    s = sink.summary()
    assert (s["outages"], s["reconnects"]) == (1, 1) and 0 < s["down_s"] < 15 and s["frames_dropped"] > 0


def test_a_server_that_never_answers_costs_the_run_no_more_than_the_timeouts(monkeypatch):
    """It takes the connection and says nothing: each attempt ends after the muxer's timeout, the
    write stage never waits on it, and closing does not hang."""
    monkeypatch.setattr(publish, "IO_TIMEOUT_S", 0.5)
    monkeypatch.setattr(publish, "_MUXER_OPTIONS", {**publish._MUXER_OPTIONS, "timeout": "500000"})
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # the kernel accepts; nobody reads or answers
        sink = StreamSink(f"rtsp://127.0.0.1:{mute.getsockname()[1]}/seg", 25)
        t0 = time.monotonic()
        for i in range(30):
            sink.write(packet(i))
            time.sleep(0.02)
        sink.close(completed=True, interrupted=False)
        took = time.monotonic() - t0
    s = sink.summary()
    assert s["frames_sent"] == 0 and s["outages"] == 1 and s["frames_dropped"] == 30
    assert took < 20 and not sink._thread.is_alive()


def test_a_fault_of_the_senders_own_reaches_the_write_stage(monkeypatch):
    """Not the network's (those are outages): a bug in the sender is raised by a later write, named."""
    def broken(self, picture, fmt, at=None):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(publish.H264Writer, "write", broken)
    sink = StreamSink(f"rtsp://127.0.0.1:{free_port()}/seg", 25)
    deadline = time.monotonic() + 10
    with pytest.raises(RuntimeError, match=r"^publishing to rtsp://127\.0\.0\.1:\d+/seg failed: ZeroDivisionError: boom"):
        while time.monotonic() < deadline:
            sink.write(packet(0))
            time.sleep(0.01)
    sink.close(completed=False, interrupted=False)
    assert not sink._thread.is_alive()


# rtseg run, end to end (the fake engine: the app, not a network).

@pytest.fixture
def rtseg(monkeypatch, capfd, tmp_path):
    """``rtseg(*args, fake={...})`` -> (exit code, stdout, stderr), in this process, in tmp_path."""
    from pipeline_fakes import FakeEngine

    import rtseg.pipeline.context as context

    def call(*args, fake: dict | None = None):
        monkeypatch.setattr(context, "open_engine",
                            lambda *a, **k: FakeEngine(**(fake or {}), streams=k.get("streams") or 1))
        monkeypatch.setenv("COLUMNS", "120")
        monkeypatch.chdir(tmp_path)
        return run_main(args, monkeypatch, capfd)

    return call


def test_run_publishes_the_demo_clip(tmp_path, rtseg, monkeypatch):
    monkeypatch.setattr(publish, "WAIT_S", 30.0)  # a busy machine: every frame waits for the sender
    rx = Receiver(free_port())
    code, out, err = rtseg("run", "-o", rx.url, "--json", tmp_path / "run.json")
    rx.join()
    assert code == 0, err
    assert rx.sizes == [DEMO_SIZE] * DEMO_FRAMES
    assert f"published {DEMO_FRAMES} frames to {rx.url}" in out
    assert not list(tmp_path.glob("*.mp4"))  # -o rtsp://... alone: no default file beside it
    s = json.loads((tmp_path / "run.json").read_text())["output_stream"]
    assert s == {"url": rx.url, "frames_sent": DEMO_FRAMES, "frames_dropped": 0, "down_s": 0.0, "outages": 0,
                 "reconnects": 0}


def test_a_receiver_gone_mid_run_leaves_the_file_output_complete(tmp_path, rtseg, caplog):
    rx = Receiver(free_port(), stop_after=15)
    code, out, err = rtseg("run", "-o", "out.mp4", "-o", rx.url, "--json", tmp_path / "run.json",
                           fake={"delay": {"infer": 0.06}})  # about 3 s: the receiver leaves early on
    rx.join()
    assert code == 0, err
    assert len(rx.sizes) == 15
    assert count_frames(tmp_path / "out.mp4")[0] == DEMO_FRAMES
    s = json.loads((tmp_path / "run.json").read_text())["output_stream"]
    assert s["outages"] >= 1 and s["down_s"] > 0 and s["frames_sent"] + s["frames_dropped"] == DEMO_FRAMES
    assert s["frames_sent"] < DEMO_FRAMES
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # in this process: pytest's handler
    assert any(m.startswith(f"lost {rx.url} (") and "the run goes on" in m for m in said), said
    assert f"published {s['frames_sent']} frames to {rx.url}; down " in out


@pytest.mark.parametrize("args, message", [
    (["-o", "rtmp://127.0.0.1/live/x"], "rtmp:// is not supported"),
    (["-o", "a.mp4", "-o", "b.mp4"], "given twice"),
    (["-o", "udp://127.0.0.1:1234"], "a udp:// URL cannot be published to"),
])
def test_bad_stream_outputs_are_one_line_and_exit_2(rtseg, args, message):
    code, out, err = rtseg("run", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
