"""Frames the caller already holds go in (an iterable of frames or (frame, timestamp) pairs, a
FrameFeed pushed into from a callback); every result carries its capture timestamp, and the run's
latency is counted from capture."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_fakes import FakeEngine, frame_mark, marked_frame, write_video  # noqa: E402

import rtseg  # noqa: E402
from rtseg.errors import RtsegError  # noqa: E402
from rtseg.pipeline.opener import FrameFeed  # noqa: E402


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    import rtseg.pipeline.context as context

    monkeypatch.setattr(context, "open_engine", lambda *a, **k: FakeEngine(streams=k.get("streams") or 1))


def test_an_iterable_of_frames_loses_none_and_keeps_the_callers_timestamps():
    frames = [(marked_frame(i), 100.0 + i / 10) for i in range(12)]
    got = [(r.index, frame_mark(r.frame), r.timestamp) for r in rtseg.stream(iter(frames), view=None, device="cpu")]
    assert [g[1] for g in got] == list(range(12))
    assert [g[2] for g in got] == pytest.approx([100.0 + i / 10 for i in range(12)])


def test_frames_without_timestamps_get_index_over_fps():
    got = [r.timestamp for r in rtseg.stream([marked_frame(i) for i in range(4)], fps=8, view=None, device="cpu")]
    assert got == pytest.approx([0.0, 0.125, 0.25, 0.375])


def test_a_video_files_results_carry_its_presentation_time(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 6, fps=12.0)
    got = [r.timestamp for r in rtseg.stream(clip, stride=2, view=None, device="cpu")]
    assert got == pytest.approx([0.0, 2 / 12, 4 / 12])  # frames 0, 2, 4 of the file


def test_a_bad_frame_is_one_line():
    with pytest.raises(RtsegError, match=r"BGR uint8 \(H, W, 3\) frames"):
        list(rtseg.stream([np.zeros((10, 10), np.float32)], view=None, device="cpu"))
    with pytest.raises(RtsegError, match="a source is a path, a camera index, a URL, a FrameFeed or an iterable"):
        rtseg.stream(3.5, device="cpu")


def test_a_feed_pushed_from_a_callback_thread_is_live_newest_wins():
    feed = FrameFeed(fps=200)

    def camera_callback() -> None:  # a driver's thread, 200 frames a second
        for i in range(60):
            feed.put(marked_frame(i), timestamp=1000.0 + i)
            time.sleep(0.005)
        feed.close()

    threading.Thread(target=camera_callback, daemon=True).start()
    marks, stamps, dropped = [], [], 0
    for r in rtseg.stream(feed, view=None, device="cpu"):
        time.sleep(0.02)  # a slow consumer: stale frames are dropped, never queued
        marks.append(frame_mark(r.frame))
        stamps.append(r.timestamp)
        dropped = r.dropped
    assert marks == sorted(marks) and len(set(marks)) == len(marks) and marks[-1] >= 55
    assert stamps == [1000.0 + m for m in marks]  # each result keeps its own frame's timestamp
    assert dropped > 0 and len(marks) + dropped <= 60


def test_a_live_iterable_drops_stale_frames():
    def frames():
        for i in range(50):
            time.sleep(0.003)
            yield marked_frame(i)

    marks = []
    for r in rtseg.stream(frames(), live=True, view=None, device="cpu"):
        time.sleep(0.02)
        marks.append(frame_mark(r.frame))
    assert marks == sorted(marks) and len(marks) < 50 and marks[-1] == 49


def test_the_run_json_has_latency_from_capture_and_the_time_to_the_first_frame(rtseg_cli, tmp_path, monkeypatch):
    import json

    clip = write_video(tmp_path / "clip.mp4", 5)
    code, _, err = rtseg_cli("run", clip, "-o", tmp_path / "o.mp4", "--json", tmp_path / "r.json", "-q")
    assert code == 0, err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert set(doc["latency_ms"]) == {"mean", "p50", "p95", "p99"} and doc["latency_ms"]["p99"] >= doc["latency_ms"]["p50"]
    assert doc["first_frame_s"] is None or doc["first_frame_s"] > 0
    assert doc["steady_fps"] >= doc["fps"] > 0  # once started: without the pipeline's start and its first frame
    assert doc["resize"] == "stretch" and doc["tool_files"] is None  # rtseg's own weights
    assert doc["options"]["max_frames"] is None and doc["options"]["runtime"] == "auto"
    assert doc["rtseg_version"] == rtseg.__version__ and doc["temporal"] == {"state": "off", "asked": "auto",
                                                                             "why_off": "the engine gives no class scores"}
