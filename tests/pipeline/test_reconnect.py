"""Live sources that survive the real world (LiveSource with reopen): a device that drops and
comes back, one that never returns, one that stalls without closing, and Ctrl-C while waiting
to reconnect. Fake devices in this process; waits shortened."""
from __future__ import annotations

import threading
import time

import pytest
from pipeline_fakes import FakeEngine, RecordingSink, frame_mark, marked_frame

from rtseg.errors import RtsegError
from rtseg.pipeline import Look, engine_stages, run
from rtseg.pipeline.live import LiveSource


class Device:
    """Frames ``first``, ``first + 1``, ... at 200 fps; after ``n`` of them it ends (``stall``:
    its read blocks for good instead, as a frozen network stream does)."""

    def __init__(self, first: int, n: int, stall: bool = False):
        self.next, self.last, self.stall = first, first + n, stall
        self.released = threading.Event()

    def read(self):
        if self.next >= self.last:
            if self.stall:
                self.released.wait()  # stuck until released (and possibly after)
            return False, None
        time.sleep(0.005)
        self.next += 1
        return True, marked_frame(self.next - 1)

    def release(self):
        self.released.set()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(LiveSource, "BACKOFF", (0.05, 0.1))


def _read_all(source: LiveSource, stop: threading.Event | None = None) -> list[int]:
    marks = []
    while (frame := source.read(stop)) is not None:
        marks.append(frame_mark(frame))
    return marks


def test_a_device_that_drops_and_comes_back_carries_on_and_is_counted():
    devices = iter([Device(20, 20), Device(40, 10)])  # the same camera, opened again twice
    opens = []

    def reopen():
        opens.append(time.monotonic())
        return next(devices, None)

    source = LiveSource(Device(0, 20), name="cam", fps=200, reopen=reopen, reconnect=2, stall_timeout=1.0)
    with pytest.raises(RtsegError, match=r"cam was lost \(stopped delivering\) and did not come back after 2 attempt"):
        _read_all_until_error(source, seen := [])
    assert seen == sorted(seen) and seen[-1] == 49 and len(set(seen)) == len(seen)  # frames from all three openings
    assert source.outages == 3 and source.reconnects == 2


def _read_all_until_error(source, seen):
    while (frame := source.read()) is not None:
        seen.append(frame_mark(frame))


def test_without_reconnect_the_stream_ends_with_the_device_as_before():
    source = LiveSource(Device(0, 5), name="cam", fps=200, reopen=lambda: Device(5, 5), reconnect=0)
    assert _read_all(source) == list(range(5)) and source.outages == 0


def test_a_stalled_read_is_abandoned_and_the_device_opened_again():
    stuck = Device(0, 10, stall=True)
    devices = iter([Device(10, 5)])  # opened again once; after that the stream is gone
    source = LiveSource(stuck, name="stream", fps=200, reopen=lambda: next(devices, None), reconnect=1,
                        stall_timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(RtsegError, match="did not come back"):  # the second device ends; nothing after it
        _read_all_until_error(source, seen := [])
    assert seen == list(range(15)) and source.reconnects == 1
    assert time.monotonic() - t0 < 5  # the stuck read did not hold anything up
    assert not stuck.released.is_set()  # never released under a read in progress (that crashes FFmpeg)


def test_stopping_during_a_reconnect_wait_ends_at_once():
    source = LiveSource(Device(0, 3), name="cam", fps=200, reopen=lambda: None, reconnect=3)
    LiveSource.BACKOFF = (5.0,)  # a long wait (the fixture puts the short one back)
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    t0 = time.monotonic()
    assert _read_all(source, stop) == [0, 1, 2]
    assert time.monotonic() - t0 < 2
    source.close()


def test_a_run_keeps_writing_across_an_outage_with_continuous_indices():
    devices = iter([Device(30, 30)])
    source = LiveSource(Device(0, 30), name="cam", fps=200, reopen=lambda: next(devices, None), reconnect=1,
                        stall_timeout=1.0)
    sink = RecordingSink()
    with pytest.raises(RtsegError, match="read stage: cam was lost"):
        run(source, engine_stages(FakeEngine(), Look()), sink, queue_size=1)
    indices = [i for i, _, _ in sink.seen]
    assert indices == list(range(len(indices))) and len(indices) > 30  # frames after the outage were written
    assert source.reconnects == 1


# --- Against a camera served on 127.0.0.1 (MJPEG over HTTP), through the CLI as a user runs it ---

def _rtseg(*args, timeout=120):
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
    from test_run import rtseg_subprocess  # the fake engine: the camera's pace sets the run's length

    return rtseg_subprocess(*args, cwd=Path(os.environ.get("TMPDIR", "/tmp")), timeout=timeout)


def _after_frames(camera, n: int, action, *args) -> None:
    """Call ``action(*args)`` once the camera has sent ``n`` frames (the client is connected and
    running), whatever the time a subprocess takes to start."""
    def wait():
        deadline = time.monotonic() + 60
        while camera.frames_sent < n and time.monotonic() < deadline:
            time.sleep(0.02)
        action(*args)

    threading.Thread(target=wait, daemon=True).start()


@pytest.fixture
def camera():
    from mjpeg_camera import MjpegCamera

    cam = MjpegCamera(fps=25)
    yield cam
    cam.close()


@pytest.mark.slow
def test_a_camera_away_for_3_s_costs_one_reconnect_and_no_frame(camera, tmp_path):
    import json

    from pipeline_fakes import count_frames

    _after_frames(camera, 25, camera.outage, 3.0)
    url = camera.url.replace("http://", "http://admin:hunter2@")  # credentials: used, never shown
    res = _rtseg("run", url, "--max-frames", "150", "-o", tmp_path / "live.mp4", "--json", tmp_path / "run.json")
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["frames"] == 150 and summary["outages"] == 1 and summary["reconnects"] == 1
    assert count_frames(tmp_path / "live.mp4")[0] == 150
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "reconnecting" in warnings[0] and "is back after" in warnings[1]
    everything = res.stdout + res.stderr + (tmp_path / "run.json").read_text()
    assert "hunter2" not in everything


@pytest.mark.slow
def test_a_camera_that_never_returns_ends_the_run_with_one_line_and_a_playable_file(camera, tmp_path):
    from pipeline_fakes import count_frames

    _after_frames(camera, 20, camera.close)
    res = _rtseg("run", camera.url, "-o", tmp_path / "live.mp4", "--reconnect", "2")
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: read stage: stream was lost") and "did not come back after 2 attempt(s)" in last
    kept = list(tmp_path.glob("live*.mp4"))
    assert kept and count_frames(kept[0])[0] > 0  # what was written stays, and plays


@pytest.mark.slow
def test_a_stalled_camera_is_reconnected(camera, tmp_path):
    import json

    def stall_for(seconds):
        camera.stalled.set()
        threading.Timer(seconds, camera.stalled.clear).start()

    _after_frames(camera, 20, stall_for, 2.5)
    res = _rtseg("run", camera.url, "--max-frames", "100", "--stall-timeout", "1", "-o", tmp_path / "live.mp4",
                 "--json", tmp_path / "run.json")
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["frames"] == 100 and summary["reconnects"] >= 1 and "sent no frame for 1 s" in res.stderr


@pytest.mark.slow
def test_rtseg_stream_of_a_url_carries_on_through_an_outage(camera, monkeypatch):
    import rtseg

    monkeypatch.setattr(LiveSource, "BACKOFF", (0.5, 1.0, 2.0, 4.0, 8.0))  # the real waits: the outage is 2 s

    _after_frames(camera, 15, camera.outage, 2.0)
    url = camera.url.replace("http://", "http://admin:hunter2@")
    indices = [r.index for r in rtseg.stream(url, runtime="pytorch", device="cpu", size=(64, 96), max_frames=60)]
    assert indices == list(range(60))  # no gap, no repeat, across the reconnect
