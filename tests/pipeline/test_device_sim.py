"""The pipeline beside a simulated GPU engine (holds the GIL while launching, releases it while
the device works): it keeps pace with its slowest stage, and sets and restores the GIL switch
interval. Ratios are measured within one run, with generous margins (a loaded 2-core machine)."""
from __future__ import annotations

import sys
import threading

from pipeline_fakes import DeviceEngine, ListSource, RecordingSink, sleeping
from rtseg.pipeline import Look, engine_stages, run
from rtseg.pipeline.runner import Stage
from rtseg.pipeline import threads

DEVICE_MS = 25.0  # the slowest stage by far, GIL-free: the ratio below does not hang on scheduling luck
HOST_MS = 8.0  # each of post and write: GIL-free too, as native work is


def _one_run(*, sequential: bool, frames: int = 40):
    engine = DeviceEngine(0.5, DEVICE_MS)
    stages = sleeping(engine_stages(engine, Look(legend=False)), {"post": HOST_MS / 1e3})
    return run(ListSource(frames), stages, RecordingSink(delay=HOST_MS / 1e3), sequential=sequential)


def test_pipeline_keeps_pace_with_the_slowest_stage_when_the_device_wait_releases_the_gil():
    for attempt in range(2):  # once more if a burst of load from elsewhere spoilt the first
        piped = _one_run(sequential=False)
        seq = _one_run(sequential=True)
        slowest = 1e3 / max(s["mean"] for s in piped.stages_ms.values())  # its rate, in this very run
        ok = piped.fps >= 0.9 * slowest and piped.fps >= 1.5 * seq.fps
        if ok:
            break
    assert piped.frames == seq.frames == 40
    assert piped.fps >= 0.9 * slowest, (piped.fps, slowest, piped.stages_ms)
    assert piped.fps >= 1.5 * seq.fps, (piped.fps, seq.fps)


def test_switch_interval_is_shortened_during_a_pipelined_run_and_restored_after():
    before = sys.getswitchinterval()
    seen = []

    def look(p):
        seen.append(sys.getswitchinterval())

    engine = DeviceEngine(0.1, 0.1)
    run(ListSource(5), [*engine_stages(engine, None), Stage("post", look)], RecordingSink())
    assert seen == [threads.SWITCH_INTERVAL_S] * 5
    assert sys.getswitchinterval() == before
    run(ListSource(3), [*engine_stages(engine, None), Stage("post", look)], RecordingSink(), sequential=True)
    assert seen[-3:] == [before] * 3  # sequential: one thread, nothing to hand over


def test_two_runs_at_once_restore_the_interval_only_when_both_have_ended():
    before = sys.getswitchinterval()
    inside, gate, during = threading.Event(), threading.Event(), []

    def held(p):
        inside.set()
        gate.wait(5)

    engine = DeviceEngine(0.1, 0.1)
    slow = threading.Thread(target=run, args=(ListSource(2), [*engine_stages(engine, None), Stage("post", held)],
                                              RecordingSink()))
    slow.start()
    assert inside.wait(5)
    run(ListSource(3), [*engine_stages(engine, None), Stage("post", lambda p: None)], RecordingSink())
    during.append(sys.getswitchinterval())  # the slow run is still going
    gate.set()
    slow.join(10)
    assert during == [threads.SWITCH_INTERVAL_S]
    assert sys.getswitchinterval() == before
