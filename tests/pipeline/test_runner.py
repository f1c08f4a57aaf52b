"""The stage runner with a fake engine: order, back-pressure, shutdown, faults, Ctrl-C, live drops."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pipeline_fakes import (Boom, FailingLook, FakeEngine, ListSource, RecordingSink, SimulatedCamera, frame_mark,
                            with_jitter)
from rtseg.errors import RtsegError
from rtseg.pipeline import Look, StageError, engine_stages, run
from rtseg.pipeline.runner import Stage, post_workers_for
from rtseg.viz import compose_i420, yuv_luts
from rtseg.pipeline.live import LiveSource

MODES = [pytest.param(False, id="pipelined"), pytest.param(True, id="sequential")]


def _stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rtseg-")]


def _run_guarded(fn, timeout: float = 10.0):
    """Run ``fn`` in a helper thread so a hang fails the test instead of freezing the suite."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"the run did not finish within {timeout} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


@pytest.mark.parametrize("sequential", MODES)
def test_every_frame_in_order_with_jittery_stages(sequential):
    engine = FakeEngine(delay={"preprocess": 0.004, "infer": 0.006})
    source, sink = ListSource(60), RecordingSink()
    stages = with_jitter(engine_stages(engine, Look()), 0.004)
    result = run(source, stages, sink, sequential=sequential, queue_size=2)
    assert [s[0] for s in sink.seen] == list(range(60))
    # each picture's ids come from its own frame: nothing got mixed up between packets
    assert all(frame == ids == i % 251 for i, frame, ids in sink.seen)
    assert result.frames == 60 and result.completed and not result.interrupted
    assert sink.closed_with == {"completed": True, "interrupted": False} and source.closed
    assert set(result.stages_ms) == {"read", "transform", "infer", "post", "write"}
    assert all(result.stages_ms[s]["p95"] >= result.stages_ms[s]["p50"] >= 0 for s in result.stages_ms)
    assert not _stage_threads()


@pytest.mark.parametrize("streams", [2, 3])
def test_several_infer_workers_keep_the_order(streams):
    """A multi-stream engine: its infer calls overlap, and the frames still leave in order."""
    engine = FakeEngine(delay={"infer": 0.01}, streams=streams)
    source, sink = ListSource(60), RecordingSink()
    result = _run_guarded(lambda: run(source, engine_stages(engine, Look()), sink, queue_size=2))
    assert [s[0] for s in sink.seen] == list(range(60))
    assert all(frame == ids == i % 251 for i, frame, ids in sink.seen)
    assert result.completed and engine.most_at_once >= 2 and not _stage_threads()


@pytest.mark.parametrize("frames", [0, 1, 2])
def test_several_infer_workers_and_fewer_frames_than_workers(frames):
    sink = RecordingSink()
    result = _run_guarded(lambda: run(ListSource(frames), engine_stages(FakeEngine(streams=3), Look()), sink))
    assert result.completed and [s[0] for s in sink.seen] == list(range(frames)) and not _stage_threads()


def test_a_fault_in_one_of_several_infer_workers_stops_everything():
    engine = FakeEngine(fail={"infer": 5}, delay={"infer": 0.005}, streams=3)
    source, sink = ListSource(1000), RecordingSink()
    with pytest.raises(StageError, match="^infer stage failed: Boom"):
        _run_guarded(lambda: run(source, engine_stages(engine, Look()), sink, queue_size=3))
    assert source.given < 1000 and [s[0] for s in sink.seen] == list(range(len(sink.seen)))
    deadline = time.monotonic() + 1.0
    while _stage_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _stage_threads()


class _Concurrency:
    """Wraps a stage function: counts how many calls run at once, and sleeps a random time in
    each so that workers finish out of order."""

    def __init__(self, fn, seconds: float):
        self.fn, self.seconds, self.now, self.most = fn, seconds, 0, 0
        self.lock, self.rng = threading.Lock(), np.random.default_rng(3)

    def __call__(self, p):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            pause = self.rng.uniform(0, self.seconds)
        try:
            time.sleep(pause)
            return self.fn(p)
        finally:
            with self.lock:
                self.now -= 1


class _PictureSink(RecordingSink):
    """Also checks that each packet's picture was drawn from its own frame and ids."""

    def __init__(self, luts):
        super().__init__()
        self.luts, self.mismatches = luts, 0

    def write(self, p) -> None:
        want = compose_i420(p.frame, p.ids, self.luts, "overlay", Look().alpha)
        self.mismatches += int(not np.array_equal(p.picture, want))
        super().write(p)


@pytest.mark.parametrize("workers", [2, 3])
def test_several_post_workers_keep_the_order(workers):
    """Colour and blend on several threads (a many-core machine): they overlap, finish out of
    order, and the pictures still leave in order, each drawn from its own frame."""
    engine = FakeEngine(delay={"infer": 0.002})
    stages = engine_stages(engine, Look(legend=False), i420=True, post_workers=workers)  # as for the H.264 writer
    assert [s.workers for s in stages] == [1, 1, workers]
    post = _Concurrency(stages[2].fn, 0.01)
    stages[2] = Stage("post", post, workers)
    source, sink = ListSource(60), _PictureSink(yuv_luts(engine.meta.palette))
    result = _run_guarded(lambda: run(source, stages, sink, queue_size=2))
    assert [s[0] for s in sink.seen] == list(range(60))
    assert all(frame == ids == i % 251 for i, frame, ids in sink.seen)
    assert sink.mismatches == 0 and sink.formats == {"i420"}
    assert result.completed and post.most >= 2 and not _stage_threads()


def test_a_fault_in_one_of_several_post_workers_stops_everything():
    source, sink = ListSource(1000), RecordingSink()
    stages = engine_stages(FakeEngine(delay={"infer": 0.002}), FailingLook(5), post_workers=3)
    with pytest.raises(StageError, match="^post stage failed: Boom"):
        _run_guarded(lambda: run(source, stages, sink, queue_size=3))
    assert source.given < 1000 and [s[0] for s in sink.seen] == list(range(len(sink.seen)))
    assert sink.closed_with == {"completed": False, "interrupted": False} and source.closed
    deadline = time.monotonic() + 1.0
    while _stage_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _stage_threads()


def test_post_workers_follow_the_core_count():
    assert [post_workers_for(n) for n in (1, 2, 4, 7, 8, 16, 64)] == [1, 1, 1, 1, 2, 2, 2]


def test_max_frames_stops_early():
    source, sink = ListSource(50), RecordingSink()
    result = run(source, engine_stages(FakeEngine(), Look()), sink, max_frames=7)
    assert result.frames == 7 and [s[0] for s in sink.seen] == list(range(7)) and result.completed


def test_steady_fps_counts_from_the_tenth_frame():
    """The first frames come out in a burst (made ahead while the first was inferred): steady_fps
    counts from the 10th written, so a writer that takes 20 ms a frame from then on gives at most
    50 fps, where counting from the first would give about 70."""

    class SlowAfterTen(RecordingSink):
        def write(self, p):
            super().write(p)
            if len(self.seen) >= 10:
                time.sleep(0.02)

    result = run(ListSource(30), engine_stages(FakeEngine(), Look()), SlowAfterTen())
    assert result.frames == 30
    assert 30 < result.steady_fps <= 50.5
    short = run(ListSource(5), engine_stages(FakeEngine(), Look()), RecordingSink())
    assert short.steady_fps is not None and short.steady_fps > 0  # under 20 frames: from the first


def test_back_pressure_bounds_frames_in_flight():
    """A slow writer stalls the reader: at most the queues' capacity plus one packet per stage is in flight."""
    queue_size = 2
    source = ListSource(40)
    sink = RecordingSink(delay=0.01, source=source)
    stages = engine_stages(FakeEngine(), Look())
    run(source, stages, sink, queue_size=queue_size)
    working = sum(s.workers for s in stages) + 1  # one packet per stage worker and the reader (post has 2 workers on >= 8 cores)
    bound = queue_size * (len(stages) + 1) + working + 1  # queued + being worked on + being written
    assert 4 <= sink.in_flight_max <= bound  # the reader did run ahead (so the bound was tested) but no further


@pytest.mark.parametrize("sequential", MODES)
@pytest.mark.parametrize("stage", ["read", "transform", "infer", "post", "write"])
def test_a_fault_in_any_stage_stops_everything_and_names_the_stage(stage, sequential):
    fail_at = 5
    method = {"transform": "preprocess", "infer": "infer"}.get(stage)
    engine = FakeEngine(fail={method: fail_at} if method else None)
    source = ListSource(1000, fail_at=fail_at if stage == "read" else None)
    sink = RecordingSink(fail_at=fail_at if stage == "write" else None)
    look = FailingLook(fail_at) if stage == "post" else Look()  # post reads the look once a frame

    def go():
        return run(source, engine_stages(engine, look), sink, sequential=sequential, queue_size=3)

    with pytest.raises(StageError) as info:
        _run_guarded(go)
    assert str(info.value).startswith(f"{stage} stage failed: Boom: injected fault")
    assert "\n" not in str(info.value) and info.value.stage == stage
    assert isinstance(info.value.__cause__, Boom)
    assert source.given < 1000  # the reader stopped too
    assert len(sink.seen) <= fail_at + 1  # only frames before the fault got out
    assert sink.closed_with == {"completed": False, "interrupted": False} and source.closed
    deadline = time.monotonic() + 1.0
    while _stage_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _stage_threads(), "a stage thread outlived the run"


def test_user_error_mid_run_stays_a_user_error():
    """An RtsegError in a stage (e.g. a truncated file found while reading) keeps its type (exit 2)."""

    class Truncated(ListSource):
        def read(self, stop=None):
            if self.given == 3:
                raise RtsegError("clip.avi ended after 3 of its 9 frames: the file is truncated or corrupt")
            return super().read(stop)

    with pytest.raises(RtsegError, match=r"^read stage: clip.avi ended after 3"):
        run(Truncated(9), engine_stages(FakeEngine(), Look()), RecordingSink())


@pytest.mark.parametrize("sequential", MODES)
def test_ctrl_c_in_the_main_thread_stops_cleanly(sequential):
    source, sink = ListSource(1000), RecordingSink(interrupt_at=10)
    result = _run_guarded(lambda: run(source, engine_stages(FakeEngine(), Look()), sink, sequential=sequential))
    assert result.interrupted and not result.completed and result.frames == 10
    assert sink.closed_with == {"completed": False, "interrupted": True} and source.closed
    assert not _stage_threads()


def test_live_source_drops_stale_frames_and_counts_them():
    """A camera at 200 fps into a pipeline that manages ~50: stale frames are skipped, newest first,
    and every delivered frame is either written or counted as dropped."""
    camera = SimulatedCamera(n=80, fps=200)
    source = LiveSource(camera, name="sim", fps=200)
    engine = FakeEngine()
    stages = engine_stages(engine, Look())
    slow_infer = stages[1].fn

    def infer(p):  # a slow network: 20 ms per frame
        time.sleep(0.02)
        return slow_infer(p)

    stages[1] = type(stages[1])("infer", infer)
    sink = RecordingSink()
    result = _run_guarded(lambda: run(source, stages, sink, queue_size=1))
    marks = [frame for _, frame, _ in sink.seen]
    assert result.dropped > 0 and result.dropped == source.dropped
    assert result.frames + result.dropped == camera.delivered == 80
    assert marks == sorted(marks) and len(set(marks)) == len(marks)  # newer frames only, never repeated
    assert marks[-1] == 79  # the last frame the camera gave was shown
    assert camera.released.is_set()


def test_live_source_hands_out_the_newest_frame():
    camera = SimulatedCamera(n=10, fps=10_000)
    source = LiveSource(camera, name="sim", fps=30)
    deadline = time.monotonic() + 2
    while camera.delivered < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert frame_mark(source.read()) == 9 and source.dropped == 9
    assert source.read() is None  # the camera ended
    source.close()


def test_live_source_failure_is_reported_by_read():
    class Broken(SimulatedCamera):
        def read(self):
            if self.delivered == 2:
                raise OSError("device unplugged")
            return super().read()

    source = LiveSource(Broken(n=10, fps=1000), name="cam", fps=30)
    with pytest.raises(RtsegError, match=r"^read stage: cam failed: OSError: device unplugged"):
        run(source, engine_stages(FakeEngine(), Look()), RecordingSink(), queue_size=1)
