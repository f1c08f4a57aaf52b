"""rtseg.stream and rtseg.VideoWriter: the pipelined app behind a Python loop. Fakes check the
order under jitter, leaving the loop early, an exception in the loop body and a failing stage;
the real bundled weights check that ids equal engine.predict and that the writer's video is
the one rtseg run writes."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "pipeline"))
from pipeline_fakes import FakeEngine, ListSource, count_frames, frame_mark  # noqa: E402

import rtseg  # noqa: E402
from rtseg.pipeline.runner import StageError  # noqa: E402
from rtseg.streaming import _iterate  # noqa: E402


def _stream(source, engine, queue_size, look=None):
    """The generator behind rtseg.stream over an opened run of ``source`` and ``engine`` (no picture without ``look``)."""
    from pipeline_fakes import fake_run

    return _iterate(fake_run(source, engine, queue_size, look), picture=look is not None)


def _rtseg_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rtseg-")]


def _wait_gone(seconds: float = 1.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _rtseg_threads():
            return True
        time.sleep(0.02)
    return not _rtseg_threads()


def test_results_come_in_order_under_jitter_with_every_frame():
    engine = FakeEngine(delay={"preprocess": 0.004, "infer": 0.008}, streams=2)
    got = [(r.index, frame_mark(r.frame), int(r.ids[0, 0])) for r in _stream(ListSource(30), engine, 4)]
    assert [g[0] for g in got] == list(range(30)) and [g[1] for g in got] == list(range(30))
    assert all(ids == mark for _, mark, ids in got)  # each result's ids are its own frame's
    assert _wait_gone()


def test_leaving_the_loop_stops_every_thread_within_a_second():
    source = ListSource(10_000)
    for r in _stream(source, FakeEngine(), 4):
        if r.index == 5:
            break
    assert _wait_gone(1.0) and source.closed and source.given < 100  # no reading on after the break


def test_an_exception_in_the_loop_body_stops_the_pipeline_and_propagates():
    source = ListSource(10_000)
    with pytest.raises(ZeroDivisionError):
        for r in _stream(source, FakeEngine(), 4):
            if r.index == 3:
                1 / 0
    assert _wait_gone(1.0) and source.closed


def test_the_picture_drawn_ahead_is_the_one_overlay_would_draw():
    from rtseg.pipeline.packet import Look

    results = list(_stream(ListSource(3, size=(48, 64)), FakeEngine(), 4, Look(view="side-by-side", alpha=0.3)))
    for r in results:
        assert r._packet.picture_format == "i420" and "post" in r.timings
        ahead = r.overlay(view="side-by-side", alpha=0.3).astype(int)  # from the I420 picture drawn in the pipeline
        r._packet.picture = None
        fresh = r.overlay(view="side-by-side", alpha=0.3).astype(int)  # drawn now, in BGR
        assert ahead.shape == fresh.shape == (48, 128, 3) and np.abs(ahead - fresh).mean() < 3


def test_a_failing_stage_raises_in_the_callers_thread_with_its_name():
    with pytest.raises(StageError, match="infer stage failed: Boom: injected fault in infer at frame 4"):
        for _ in _stream(ListSource(20), FakeEngine(fail={"infer": 4}), 4):
            pass
    assert _wait_gone()


@pytest.mark.slow
def test_stream_of_the_demo_clip_equals_predict_and_the_writer_writes_h264(tmp_path, monkeypatch):
    from rtseg.bundled import DEFAULT_WEIGHTS, DEMO_CLIP

    if not DEMO_CLIP.is_file():
        pytest.skip("the bundled demo clip is not here")
    monkeypatch.chdir(tmp_path)  # any folder: the bundled files are found from the package
    engine = rtseg.load_engine(DEFAULT_WEIGHTS, size=(360, 480), runtime="pytorch")
    with rtseg.VideoWriter(tmp_path / "api.mp4") as out:
        for r in rtseg.stream(runtime="pytorch", device="cpu", max_frames=6, temporal="off"):  # the network's own ids
            assert r.ids.shape == r.frame.shape[:2] and set(r.timings) == {"read", "transform", "infer", "post"}
            np.testing.assert_array_equal(r.ids, engine.predict(r.frame))
            out.write(r)
            assert r.overlay(view="side-by-side").shape == (360, 960, 3)
    assert count_frames(tmp_path / "api.mp4")[:2] == (6, pytest.approx(15.0, abs=0.01))
    assert r.classes[0] == "Sky" and len(r.palette) == 11
    steady = list(rtseg.stream(runtime="pytorch", device="cpu", max_frames=3, view=None))  # the default: auto
    assert all("temporal" in r.timings for r in steady)  # a video and an engine with scores: the filter ran
    assert sum(1 for _ in rtseg.stream(max_frames=4)) == 4


@pytest.mark.slow
def test_the_readme_example_runs_from_another_folder(tmp_path):
    import subprocess

    from rtseg.bundled import DEMO_CLIP

    if not DEMO_CLIP.is_file():
        pytest.skip("the bundled demo clip is not here")
    example = Path(__file__).resolve().parents[1] / "examples" / "segment_video.py"
    readme = (example.parents[1] / "README.md").read_text()
    body = [line for line in example.read_text().splitlines()[5:] if line.strip()]
    assert all(line in readme for line in body)  # the README shows this very code
    proc = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("frame ") == 101 and count_frames(tmp_path / "segmented.mp4")[0] == 101


def test_a_live_source_drops_stale_frames_and_the_results_count_them():
    from pipeline_fakes import SimulatedCamera

    from rtseg.pipeline.live import LiveSource

    camera = SimulatedCamera(n=80, fps=200)
    source = LiveSource(camera, name="sim", fps=200)
    marks, dropped = [], []
    for r in _stream(source, FakeEngine(), 1):
        time.sleep(0.02)  # a slow loop body: 50 frames a second from a 200 fps camera
        marks.append(frame_mark(r.frame))
        dropped.append(r.dropped)
    assert marks == sorted(marks) and len(set(marks)) == len(marks) and marks[-1] == 79  # newest, never repeated
    assert dropped[-1] > 0 and dropped == sorted(dropped) and len(marks) + source.dropped == 80
    assert _wait_gone()


@pytest.fixture
def fake_engine(monkeypatch):
    """rtseg.stream on the fake engine: patched where every run opens its engine."""
    import rtseg.pipeline.context as context

    monkeypatch.setattr(context, "open_engine", lambda *a, **k: FakeEngine(streams=k.get("streams") or 1))


def test_stream_takes_start_end_and_stride_as_the_cli_does(tmp_path, fake_engine):
    from pipeline_fakes import write_video

    clip = write_video(tmp_path / "clip.mp4", 24, fps=12.0)
    results = list(rtseg.stream(clip, start="0.5s", end=20, stride=2, view=None, device="cpu"))
    assert [r.index for r in results] == list(range(7))  # frames 6, 8, ..., 18
    assert [r.name for r in results][:2] == ["000006", "000008"] and results[0].fps == pytest.approx(6.0)


def test_stream_sets_an_image_folders_fps_and_refuses_it_for_a_video(tmp_path, fake_engine):
    import cv2

    from pipeline_fakes import write_video
    from rtseg.errors import RtsegError

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), 20 * i, np.uint8))
    assert [r.fps for r in rtseg.stream(tmp_path, fps=5, device="cpu")] == [5.0] * 3
    clip = write_video(tmp_path / "clip.mp4", 3)
    with pytest.raises(RtsegError, match="--fps applies to image folders and globs"):
        rtseg.stream(clip, fps=5, device="cpu")
    with pytest.raises(RtsegError, match=r"--fps 0 is not allowed; use a rate > 0"):
        rtseg.stream(clip, fps=0, device="cpu")


@pytest.mark.parametrize("kw, message", [
    ({"stride": 0}, "--stride 0 is not allowed; use >= 1"),
    ({"start": "5s"}, r"--start 5s is past the end of clip \(24 frames at 12 fps\)"),
    ({"start": 10, "end": 4}, "--end 4 is not after --start 10: nothing to process"),
    ({"end": "soon"}, "--end 'soon' is not a position"),
])
def test_stream_trimming_errors_are_the_clis(tmp_path, fake_engine, kw, message):
    from pipeline_fakes import write_video
    from rtseg.errors import RtsegError

    clip = write_video(tmp_path / "clip.mp4", 24, fps=12.0)
    with pytest.raises(RtsegError, match=message):
        rtseg.stream(clip, device="cpu", **kw)


def test_a_failure_after_the_source_opened_closes_it(monkeypatch):
    import rtseg.pipeline.context as context

    source = ListSource(5)
    monkeypatch.setattr(context, "open_source", lambda *a, **k: source)

    def broken(*a, **k):
        raise RuntimeError("no engine today")

    monkeypatch.setattr(context, "open_engine", broken)
    with pytest.raises(RuntimeError, match="no engine today"):
        rtseg.stream("anything", device="cpu")
    assert source.closed


@pytest.mark.parametrize("runtime", ["auto", "pytorch"])
def test_stream_refuses_bf16_on_a_cpu_without_it_in_one_line(tmp_path, tiny_checkpoint, runtime):
    from pipeline_fakes import write_video
    from rtseg.errors import RtsegError
    from rtseg.machine import native_bf16

    if native_bf16():
        pytest.skip("this CPU computes bf16 (AVX512-BF16 or AMX)")
    clip = write_video(tmp_path / "clip.mp4", 3)
    with pytest.raises(RtsegError, match="--precision bf16") as info:
        rtseg.stream(clip, weights=tiny_checkpoint, runtime=runtime, device="cpu", precision="bf16")
    assert "\n" not in str(info.value)


def test_stream_runs_at_the_precision_asked_for(tmp_path, tiny_checkpoint, monkeypatch):
    import rtseg.pipeline.context as context
    from pipeline_fakes import write_video

    asked, real = [], context.open_engine
    monkeypatch.setattr(context, "open_engine", lambda *a, **k: asked.append(k["precision"]) or real(*a, **k))
    clip = write_video(tmp_path / "clip.mp4", 3)
    results = list(rtseg.stream(clip, weights=tiny_checkpoint, runtime="pytorch", device="cpu", size=(48, 64),
                                precision="fp32", view=None))
    assert asked == ["fp32"] and len(results) == 3 and results[0].ids.shape == (48, 64)
