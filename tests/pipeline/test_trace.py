"""A run recorded as a Chrome trace: it parses, has a track per stage thread, a slice per frame
per stage, queue waits and queue-depth counters."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from pipeline_fakes import FakeEngine, ListSource, RecordingSink
from rtseg.pipeline import Look, engine_stages, run
from rtseg.pipeline.trace import Trace

STAGES = ("read", "transform", "infer", "post", "write")


def _traced(tmp_path, *, sequential: bool, frames: int = 12):
    trace = Trace()
    engine = FakeEngine(delay={"infer": 0.004})  # infer the slowest: the others wait on it
    res = run(ListSource(frames), engine_stages(engine, Look(), post_workers=1), RecordingSink(delay=0.001),
              sequential=sequential, trace=trace)
    path = trace.save(tmp_path / "trace.json")
    return res, json.loads(path.read_text())["traceEvents"]


def test_pipelined_trace_has_a_track_per_stage_and_a_slice_per_frame_per_stage(tmp_path):
    res, events = _traced(tmp_path, sequential=False)
    tracks = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert sorted(tracks.values()) == sorted(["rtseg-read", "rtseg-transform", "rtseg-infer", "rtseg-post",
                                              "write (main thread)"])
    work = [e for e in events if e["ph"] == "X" and not e["name"].startswith("wait")]
    assert Counter(e["name"] for e in work) == {s: res.frames for s in STAGES}
    for e in work:  # each on its own stage's track, with its frame and CPU time
        assert tracks[e["tid"]].removeprefix("rtseg-").startswith(e["name"])
        assert e["dur"] >= 0 and e["ts"] >= 0 and 0 <= e["args"]["frame"] < res.frames and "cpu_ms" in e["args"]
    for s in STAGES:  # frames in order on each track
        frames = [e["args"]["frame"] for e in sorted(work, key=lambda e: e["ts"]) if e["name"] == s]
        assert frames == list(range(res.frames))


def test_pipelined_trace_shows_queue_waits_and_depths(tmp_path):
    _, events = _traced(tmp_path, sequential=False)
    waits = [e for e in events if e["ph"] == "X" and e["name"].startswith("wait")]
    assert any(e["name"] == "wait get infer > post" for e in waits)  # post waits on the slow infer
    assert all(e["dur"] > 0 for e in waits)
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert counters == {"read > transform", "transform > infer", "infer > post", "post > write"}
    depths = {name: [e["args"]["depth"] for e in events if e["ph"] == "C" and e["name"] == name] for name in counters}
    assert all(0 <= d <= 4 for ds in depths.values() for d in ds)  # never past the queue size
    assert max(depths["transform > infer"]) >= 2  # frames pile up in front of the slow infer


def test_sequential_trace_has_every_stage_on_one_track(tmp_path):
    res, events = _traced(tmp_path, sequential=True, frames=5)
    work = [e for e in events if e["ph"] == "X"]
    assert len({e["tid"] for e in work}) == 1
    assert Counter(e["name"] for e in work) == {s: 5 for s in STAGES}
    assert not [e for e in events if e["ph"] == "C"]


def test_runs_sharing_a_trace_are_kept_apart(tmp_path):
    trace = Trace()
    for name in ("sequential", "pipelined"):
        trace.begin(name)
        run(ListSource(3), engine_stages(FakeEngine(), None), RecordingSink(), sequential=name == "sequential",
            trace=trace)
    events = trace.events()
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert sorted(names.values()) == ["pipelined", "sequential"]
    for pid, name in names.items():
        infer = [e for e in events if e["ph"] == "X" and e["pid"] == pid and e["name"] == "infer"]
        assert len(infer) == 3, name


@pytest.mark.parametrize("sequential", [False, True])
def test_a_failed_run_still_leaves_a_trace_to_save(tmp_path, sequential):
    from pipeline_fakes import Boom  # noqa: F401  (the injected fault)
    from rtseg.pipeline import StageError

    trace = Trace()
    with pytest.raises(StageError):
        run(ListSource(6), engine_stages(FakeEngine(fail={"infer": 3}), Look()), RecordingSink(),
            sequential=sequential, trace=trace)
    data = json.loads(trace.save(tmp_path / "t.json").read_text())
    assert [e["args"]["frame"] for e in data["traceEvents"] if e.get("name") == "infer" and e["ph"] == "X"] == [0, 1, 2]
