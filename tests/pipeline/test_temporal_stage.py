"""The temporal stage in the pipeline: it sees the frames of a stream in order even with several
infer and post workers; it holds nothing before the first frame and resets on a reconnect, a
seek (--start), frames far apart (--stride) and dropped live frames; off, the engine gives no
scores at all; an engine without scores is refused in one line."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.pipeline import temporal as temporal_mod
from rtseg.pipeline.packet import Look
from rtseg.pipeline.runner import engine_stages, run
from rtseg.pipeline.temporal import TemporalConfig, auto_off_reason, parse_temporal, resolve_temporal
from rtseg.pipeline.trim import trim
from tests.pipeline.pipeline_fakes import FakeEngine, ListSource, RecordingSink


class ScoresEngine(FakeEngine):
    """FakeEngine with scores: logits (C, h/8, w/8), 10 on the frame's mark, so the filter's ids
    are the frame's mark too (a confident frame is taken as it is)."""

    has_scores = True

    def __init__(self, **kw):
        super().__init__(**kw)
        self.scores_calls = 0

    def infer_scores(self, batch):
        self.scores_calls += 1
        ids = self.infer(batch)
        n, h, w = ids.shape
        scores = np.zeros((n, self.meta.num_classes, h // 8, w // 8), np.float16)
        for i in range(n):
            scores[i, int(ids[i, 0, 0])] = 10.0
        return ids, scores


@pytest.fixture
def seen(monkeypatch):
    """(index, whether the filter blended in its history) for every call of the filter, in order."""
    calls: list[list] = []
    call, blend = temporal_mod.TemporalFilter.__call__, temporal_mod.TemporalFilter._blend

    def spy_call(self, frame, scores, *, size=None, index=None):
        calls.append([index, False])
        return call(self, frame, scores, size=size, index=index)

    def spy_blend(self, probs, gray):
        calls[-1][1] = True
        return blend(self, probs, gray)

    monkeypatch.setattr(temporal_mod.TemporalFilter, "__call__", spy_call)
    monkeypatch.setattr(temporal_mod.TemporalFilter, "_blend", spy_blend)
    return calls


@pytest.mark.parametrize("streams,post_workers", [(1, 1), (2, 3)])
def test_the_stage_sees_frames_in_order_with_several_workers(seen, streams, post_workers):
    engine = ScoresEngine(delay={"infer": 0.003}, streams=streams)
    stages = engine_stages(engine, Look(legend=False), post_workers=post_workers, temporal=TemporalConfig())
    assert [(s.name, s.workers) for s in stages] == [("transform", 1), ("infer", streams), ("temporal", 1),
                                                    ("post", post_workers)]
    sink = RecordingSink()
    result = run(ListSource(40), stages, sink, queue_size=2)
    assert result.completed and [i for i, _ in seen] == list(range(40))
    assert [b for _, b in seen] == [False] + [True] * 39  # nothing before the first frame, then the history
    assert [s[0] for s in sink.seen] == list(range(40))
    assert all(frame == ids == i % 251 for i, frame, ids in sink.seen)  # each frame's own filtered ids


@pytest.mark.parametrize("sequential", [False, True])
def test_seek_and_stride_reset(seen, sequential):
    """--start 10: the first frame is taken as it is; --stride 5: every frame is too far from the last."""
    run(trim(ListSource(30), start="10"), engine_stages(ScoresEngine(), None, temporal=TemporalConfig()),
        RecordingSink(), sequential=sequential)
    assert seen[0] == [10, False] and all(b for _, b in seen[1:]) and len(seen) == 20
    seen.clear()
    run(trim(ListSource(30), stride=5), engine_stages(ScoresEngine(), None, temporal=TemporalConfig()),
        RecordingSink(), sequential=sequential)
    assert seen == [[i, False] for i in range(0, 30, 5)]
    seen.clear()
    run(trim(ListSource(30), stride=2), engine_stages(ScoresEngine(), None, temporal=TemporalConfig()),
        RecordingSink(), sequential=sequential)  # within max_gap (3): carried on
    assert [b for _, b in seen] == [False] + [True] * 14


class GappySource(ListSource):
    """A live-like source: frame numbers with a gap (frames dropped) and a reconnect midway."""

    def __init__(self, numbers, reconnect_at):
        super().__init__(len(numbers))
        self.numbers, self.reconnect_at, self.reconnects = numbers, reconnect_at, 0

    def read(self, stop=None):
        if self.given == self.reconnect_at:
            self.reconnects += 1  # what LiveSource counts when a lost device comes back
        return super().read(stop)

    def position(self):
        return self.numbers[self.given - 1] if self.given else None


def test_reconnect_and_dropped_frames_reset(seen):
    numbers = [0, 1, 2, 9, 10, 11, 12, 13]  # 3..8 dropped by the live source (a gap of 7)
    source = GappySource(numbers, reconnect_at=6)  # the 7th frame (number 12) comes from a new connection
    run(source, engine_stages(ScoresEngine(), None, temporal=TemporalConfig()), RecordingSink())
    assert [i for i, _ in seen] == numbers
    assert [b for _, b in seen] == [False, True, True, False, True, True, False, True]


def test_off_gives_no_scores_and_no_stage():
    engine = ScoresEngine()
    stages = engine_stages(engine, Look(legend=False))
    assert [s.name for s in stages] == ["transform", "infer", "post"]
    run(ListSource(5), stages, RecordingSink())
    assert engine.scores_calls == 0 and engine.calls["infer"] == 5


def test_an_engine_without_scores_is_refused_in_one_line():
    with pytest.raises(RtsegError, match="--temporal on needs class scores"):
        engine_stages(FakeEngine(), None, temporal=TemporalConfig())
    assert parse_temporal("off") is None and parse_temporal("ON") == TemporalConfig()
    with pytest.raises(RtsegError, match="--temporal must be auto, on or off"):
        parse_temporal("maybe")


class FolderSource(ListSource):
    image_suffix = ".png"  # what an image folder or glob says of itself


def test_auto_is_on_for_video_with_scores_and_off_elsewhere():
    auto = parse_temporal("auto")
    assert auto is not None and auto.auto
    assert resolve_temporal(auto, source=ListSource(3), engine=ScoresEngine()) == TemporalConfig()
    assert resolve_temporal(auto, source=FolderSource(3), engine=ScoresEngine()) is None  # not a sequence
    assert resolve_temporal(auto, source=ListSource(3), engine=FakeEngine()) is None  # no scores: quietly off
    on = parse_temporal("on")  # asked for: kept, and an engine without scores is then refused
    assert resolve_temporal(on, source=FolderSource(3), engine=FakeEngine()) is on
    assert resolve_temporal(None, source=ListSource(3), engine=ScoresEngine()) is None
    foreign = ScoresEngine()
    foreign.meta = replace(foreign.meta, model="foreign:segformer.onnx")  # a wrapped model from another tool
    assert resolve_temporal(auto, source=ListSource(3), engine=foreign) is None
    assert resolve_temporal(on, source=ListSource(3), engine=foreign) is on
    reasons = [auto_off_reason(source=s, engine=e) for s, e in ((ListSource(3), ScoresEngine()),
               (FolderSource(3), ScoresEngine()), (ListSource(3), FakeEngine()), (ListSource(3), foreign))]
    assert reasons == [None, "image folders are not a sequence", "the engine gives no class scores",
                       "a model from another tool; --temporal on runs it"]


def test_auto_runs_the_filter_through_segment(tmp_path, monkeypatch):
    """rtseg run's default (auto) on a video with a scores engine runs the temporal stage; on an
    engine without scores it runs without one instead of failing (resolved by open_run, once)."""
    import rtseg.pipeline.context as context
    from rtseg.pipeline.app import segment
    from rtseg.pipeline.context import RunSpec, open_run

    for engine, calls in ((ScoresEngine(), 6), (FakeEngine(), 0)):
        monkeypatch.setattr(context, "open_source", lambda *a, **k: ListSource(6))
        monkeypatch.setattr(context, "open_engine", lambda *a, _e=engine, **k: _e)
        run = open_run(RunSpec.from_options("clip.mp4", masks=tmp_path / f"m{calls}", temporal="auto"))
        assert (run.temporal is not None) == (calls > 0)
        written = segment(run)
        assert written.result.frames == 6
        assert getattr(engine, "scores_calls", 0) == calls
