"""``--runtime auto`` by measurement (rtseg/engines/probe.py): the fastest candidate whose ids
agree with the reference wins, the candidates are timed taking turns, the choice is cached per
machine and weights, a changed machine measures again, a probe measured while other work kept the
CPUs busy is measured again on a later run (up to a limit), and a precision nothing here computes
is one line. Timings and the machine's load are mocked for the selection logic; one real probe
runs at a tiny size."""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from rtseg import machine
from rtseg.engines import open_engine, probe
from rtseg.engines.probe import Candidate
from rtseg.errors import RtsegError

SIZE = (64, 96)
MEASURE_BUSY = probe.busy_other  # the real one (the fixture mocks it)


class _Fake:
    """What the probe needs of an engine: streams, preprocess, infer (ids: the share of rows
    ``agree`` says match the reference's all-zero ids) and close."""

    streams = 1

    def __init__(self, cand: Candidate, agree: float, closed: list):
        self.cand, self.agree, self.closed = cand, agree, closed

    def preprocess(self, frames):
        return np.stack(frames)

    def infer(self, batch):
        ids = np.zeros((len(batch), *SIZE), np.uint8)
        ids[:, :int(round((1 - self.agree) * SIZE[0]))] = 1  # that share of the rows disagree
        return ids

    def close(self):
        self.closed.append(self.cand.label)

    def warm_up(self, calls=1):  # open_engine's --warmup
        pass


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A private cache; fake engines; the timed calls mocked (ms per label, each call recorded in
    ``timed``); the machine's load mocked (``busy``: the share of the CPUs other work used)."""
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    plan = {"ms": {}, "agree": {}, "opened": [], "timed": [], "closed": [], "busy": 0.0}

    def timed(engine, batches, calls):
        plan["timed"].append(engine.cand.label)
        return plan["ms"][engine.cand.label] / 1000

    monkeypatch.setattr(probe, "_timed", timed)
    monkeypatch.setattr(probe, "busy_other", lambda since, now=None: plan["busy"])
    monkeypatch.setattr(probe, "candidates", lambda family, cuda, precision="auto": [
        c for i, c in enumerate([Candidate("pytorch", "fp32"), Candidate("onnxruntime", "fp32"),
                                 Candidate("openvino", "fp32"), Candidate("openvino", "bf16")])
        if i == 0 or precision in ("auto", c.precision)])

    def choose(weights, precision="auto", notes=None, budget_s=None, open_s=0.0):
        def opener(cand):
            plan["opened"].append(cand.label)
            time.sleep(open_s.get(cand.label, 0.0) if isinstance(open_s, dict) else open_s)  # loading
            return _Fake(cand, plan["agree"].get(cand.label, 1.0), plan["closed"])

        return probe.choose(weights, "pytorch", size=SIZE, device="cpu", cuda=False, streams=2, threads=0,
                            precision=precision, opener=opener, note=(notes if notes is not None else []).append,
                            budget_s=budget_s)

    plan["choose"] = choose
    return plan


def test_the_fastest_agreeing_candidate_wins_and_says_so(fake, tiny_checkpoint):
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 25.0}
    fake["agree"] = {"openvino bf16": 0.9}  # fastest, but moves 10% of the ids: rejected
    notes = []
    choice = fake["choose"](tiny_checkpoint, notes=notes)
    assert (choice.runtime, choice.precision) == ("onnxruntime", "fp32")
    assert "openvino bf16" in choice.rejected and "< 97%" in choice.rejected["openvino bf16"]
    assert len(notes) == 1 and notes[0].startswith("auto: onnxruntime fp32, 38.0 ms a frame at 64x96")
    assert "openvino fp32 48.0" in notes[0] and "pytorch fp32 55.0" in notes[0]
    assert choice.agreement["onnxruntime fp32"] == 1.0 and choice.about["machine_key"] == machine.machine_key()


@pytest.mark.parametrize("rows_wrong, winner", [(1, "openvino"), (2, "onnxruntime")])
def test_the_threshold_is_97_percent_of_the_pixels(fake, tiny_checkpoint, rows_wrong, winner):
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 30.0, "openvino bf16": 60.0}
    fake["agree"] = {"openvino fp32": 1 - rows_wrong / SIZE[0]}  # 98.4% counts, 96.9% does not
    choice = fake["choose"](tiny_checkpoint)
    assert choice.runtime == winner and (choice.agreement["openvino fp32"] >= probe.AGREEMENT) is (winner == "openvino")


def test_a_cache_hit_skips_probing_and_a_new_machine_measures_again(fake, tiny_checkpoint, monkeypatch):
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 60.0}
    fake["choose"](tiny_checkpoint)
    opened = len(fake["opened"])
    notes = []
    again = fake["choose"](tiny_checkpoint, notes=notes)
    assert len(fake["opened"]) == opened and again.runtime == "onnxruntime"  # nothing opened: the cached choice
    assert "measured earlier on this machine" in notes[0]
    stored = json.loads(probe.choices_file().read_text())["choices"]
    assert len(stored) == 1 and next(iter(stored.values()))["runtime"] == "onnxruntime"
    monkeypatch.setattr(machine, "machine_key", lambda: "another-machine")
    fake["ms"]["openvino fp32"] = 20.0
    assert fake["choose"](tiny_checkpoint).runtime == "openvino" and len(fake["opened"]) == 2 * opened
    assert len(json.loads(probe.choices_file().read_text())["choices"]) == 2  # both machines' choices kept


def test_precision_narrows_the_candidates_and_an_impossible_one_is_one_line(fake, tiny_checkpoint):
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 20.0}
    choice = fake["choose"](tiny_checkpoint, precision="fp32")
    assert (choice.runtime, choice.precision) == ("onnxruntime", "fp32")
    only = fake["choose"](tiny_checkpoint, precision="bf16")  # one candidate: nothing to measure
    assert (only.runtime, only.precision) == ("openvino", "bf16")
    with pytest.raises(RtsegError, match=r"--precision fp16: no runtime installed here computes it") as info:
        fake["choose"](tiny_checkpoint, precision="fp16")
    assert "\n" not in str(info.value)


ALL = ["pytorch fp32", "onnxruntime fp32", "openvino fp32", "openvino bf16"]


def test_every_candidate_opens_first_then_they_take_turns_round_by_round(fake, tiny_checkpoint, monkeypatch):
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 60.0}
    opened_when_timed, timed = [], probe._timed  # the fixture's: records the label
    monkeypatch.setattr(probe, "_timed", lambda *a: (opened_when_timed.append(len(fake["opened"])), timed(*a))[1])
    choice = fake["choose"](tiny_checkpoint)
    assert fake["opened"] == ALL and set(opened_when_timed) == {4}  # every one open before any is timed
    rounds = [fake["timed"][i:i + 4] for i in range(0, len(fake["timed"]), 4)]
    assert len(rounds) == probe.ROUNDS and rounds[:3] == [ALL, ALL[1:] + ALL[:1], ALL[2:] + ALL[:2]]
    assert sorted(fake["closed"]) == sorted(ALL) and choice.ms == fake["ms"]


def test_a_burst_of_load_in_one_round_lands_on_every_candidate_and_the_median_drops_it(fake, tiny_checkpoint,
                                                                                        monkeypatch):
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 60.0}
    timed = probe._timed  # the fixture's: records the label

    def burst(engine, batches, calls):  # the second round's four calls run 3x slower
        return timed(engine, batches, calls) * (3 if 4 <= len(fake["timed"]) < 8 else 1)

    monkeypatch.setattr(probe, "_timed", burst)
    choice = fake["choose"](tiny_checkpoint)
    assert fake["timed"][4:8] == ALL[1:] + ALL[:1] and choice.ms == fake["ms"] and choice.runtime == "onnxruntime"


@pytest.mark.parametrize("open_s, rounds", [(0.0, 5), (0.24, 1)])
def test_loading_and_timing_share_the_budget(fake, tiny_checkpoint, monkeypatch, open_s, rounds):
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 60.0}
    timed = probe._timed
    monkeypatch.setattr(probe, "_timed", lambda *a: (time.sleep(0.005), timed(*a))[1])
    fake["choose"](tiny_checkpoint, budget_s=1.0, open_s=open_s)  # 4 x 0.24 s of loading leave one round
    assert len(fake["timed"]) == 4 * rounds


@pytest.mark.parametrize("busy, again", [(0.0, False), (0.25, False), (0.6, True)])
def test_a_probe_while_other_work_kept_the_cpus_busy_is_measured_again_on_a_later_run(fake, tiny_checkpoint,
                                                                                      busy, again):
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 60.0}
    fake["busy"], notes = busy, []
    first = fake["choose"](tiny_checkpoint, notes=notes)
    assert first.about["busy_other"] == busy and first.provisional is again
    assert (", cached" in notes[0]) is not again
    assert ("while other work used 60% of the CPU; auto measures again on a later run" in notes[0]) is again
    fake["busy"], fake["ms"]["openvino fp32"] = 0.0, 20.0
    second = fake["choose"](tiny_checkpoint, notes=notes)
    assert len(fake["opened"]) == (8 if again else 4) and second.runtime == ("openvino" if again else "onnxruntime")
    assert ("measured earlier" in notes[1]) is not again
    fake["choose"](tiny_checkpoint, notes=notes)  # a quiet probe is final
    assert len(fake["opened"]) == (8 if again else 4) and "measured earlier on this machine;" in notes[2]


def test_after_two_busy_probes_in_a_row_the_last_one_stays(fake, tiny_checkpoint):
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 60.0}
    fake["busy"], notes = 0.6, []
    for n in range(1, probe.BUSY_PROBES + 1):
        fake["ms"]["openvino bf16"] = 30.0 - n  # each probe's pick replaces the one before
        choice = fake["choose"](tiny_checkpoint, notes=notes)
        assert len(fake["opened"]) == 4 * n and choice.about["busy_probes"] == n
    assert choice.runtime == "openvino" and not choice.provisional and "2 busy probes in a row: kept" in notes[-1]
    fake["ms"]["openvino bf16"] = 10.0
    kept = fake["choose"](tiny_checkpoint, notes=notes)
    assert probe.BUSY_PROBES == 2  # one provisional re-probe at most (#37)
    assert len(fake["opened"]) == 4 * probe.BUSY_PROBES and kept.ms["openvino bf16"] == 28.0
    assert "measured earlier on this machine while other work used 60% of the CPU" in notes[-1]


def test_busy_other_is_the_other_processes_share_of_this_processs_cpus(monkeypatch, tmp_path):
    stat = tmp_path / "stat"
    monkeypatch.setattr(probe, "_STAT", str(stat))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text(f"cpu  {5 * hz} 0 0 0 0 0 0 0 0 0\ncpu0 {hz} 0 0 {hz} 0 0 0 0 0 0\n"
                    f"cpu1 {hz} 0 0 {hz} 0 0 0 0 0 0\ncpu2 0 0 0 0 0 0 0 0 0 0\nintr 1 2 3\n")
    before = probe.cpu_mark()
    # 1 s later: cpu0 0.8 s user, 0.2 s idle; cpu1 0.1 s user (a guest's: not counted twice), 0.1 s nice,
    # 0.1 s system, 0.1 s irq, softirq and steal, 0.4 s idle, 0.2 s iowait; cpu2 is not this process's
    stat.write_text(f"cpu  {9 * hz} 0 0 0 0 0 0 0 0 0\ncpu0 {1.8 * hz:.0f} 0 0 {1.2 * hz:.0f} 0 0 0 0 0 0\n"
                    f"cpu1 {1.1 * hz:.0f} {0.1 * hz:.0f} {0.1 * hz:.0f} {1.4 * hz:.0f} {0.2 * hz:.0f} "
                    f"{0.05 * hz:.0f} {0.03 * hz:.0f} {0.02 * hz:.0f} {0.1 * hz:.0f} 0\ncpu2 {hz} 0 0 0 0 0 0 0 0 0\n")
    after = probe.cpu_mark()
    assert before[3] == after[3] == 2 and after[0] - before[0] == pytest.approx(1.2)
    since, now = (before[0], 10.0, 100.0, 2), (after[0], 10.4, 101.0, 2)  # this process: 0.4 s of CPU in 1 s
    assert probe.busy_other(since, now) == pytest.approx((1.2 - 0.4) / 2)
    assert probe.busy_other(since, (after[0], 12.0, 101.0, 2)) == 0.0  # never below 0


def test_an_unreadable_proc_stat_counts_as_quiet(fake, tiny_checkpoint, monkeypatch, tmp_path):
    monkeypatch.setattr(probe, "_STAT", str(tmp_path / "no-stat"))
    monkeypatch.setattr(probe, "busy_other", MEASURE_BUSY)
    assert probe.cpu_mark() is None and probe.busy_other(None) is None
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 60.0}
    first = fake["choose"](tiny_checkpoint)
    assert first.about["busy_other"] is None and not first.provisional
    fake["choose"](tiny_checkpoint)
    assert len(fake["opened"]) == 4  # the cached choice


def test_candidates_follow_the_machine():
    every = lambda name: True  # noqa: E731
    amd = probe.candidates("pytorch", False, installed=every, bf16=False)
    assert [c.label for c in amd] == ["pytorch fp32", "onnxruntime fp32", "openvino fp32"]
    xeon = probe.candidates("pytorch", False, installed=every, bf16=True)
    assert xeon[-1].label == "openvino bf16"
    gpu = probe.candidates("pytorch", True, installed=lambda name: name != "tensorrt", bf16=False)
    assert [c.label for c in gpu] == ["pytorch fp32", "pytorch fp16"]
    assert probe.candidates("onnx", False, installed=every, bf16=False)[0].label == "onnxruntime fp32"


def test_a_real_probe_at_a_tiny_size_picks_a_runtime_with_the_reference_ids(tiny_checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "BUDGET_S", 1.0)
    monkeypatch.setattr(probe, "busy_other", lambda since, now=None: 0.0)  # a shared machine: the cache hit below
    monkeypatch.setattr(probe, "FRAMES", 2)
    notes = []
    engine = open_engine(tiny_checkpoint, runtime="auto", size=SIZE, streams=2, note=notes.append)
    line = [n for n in notes if n.startswith("auto: ")]
    assert len(line) == 1 and f"{engine.name} {engine.precision}" in line[0] and "64x96" in line[0]
    choice = next(iter(probe.cached_choices().values()))
    assert choice.runtime == engine.name and set(choice.ms) >= {"pytorch fp32"}
    assert all(a >= probe.AGREEMENT for k, a in choice.agreement.items() if k not in choice.rejected)
    assert engine.streams == (2 if engine.name in ("onnxruntime", "openvino") else 1)
    notes.clear()
    open_engine(tiny_checkpoint, runtime="auto", size=SIZE, streams=2, note=notes.append)
    assert any("measured earlier" in n for n in notes) and not any(n.startswith("exporting") for n in notes)


def test_a_choice_cached_before_the_load_was_measured_is_measured_again(fake, tiny_checkpoint):
    """auto_runtime.json entries written by an rtseg that did not record the load (no busy_other)
    may hold a pick made on a busy machine: the next run measures again, once."""
    import json

    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 60.0}
    fake["choose"](tiny_checkpoint)
    path = probe.choices_file()
    data = json.loads(path.read_text())
    for entry in data["choices"].values():  # as the older rtseg wrote it: a slow pick, no load recorded
        entry["runtime"], entry["about"] = "pytorch", {k: v for k, v in entry["about"].items() if k != "busy_other"}
    path.write_text(json.dumps(data))
    assert all(c.provisional for c in probe.cached_choices().values())
    again = fake["choose"](tiny_checkpoint)
    assert len(fake["opened"]) == 8 and again.runtime == "onnxruntime" and not again.provisional
    fake["choose"](tiny_checkpoint)
    assert len(fake["opened"]) == 8  # final now


class _SlowEngine:
    """An engine whose infer takes 0.2 s and counts the calls in progress."""

    streams = 2

    def __init__(self):
        self.lock, self.in_call, self.started = threading.Lock(), 0, 0

    def infer(self, batch):
        with self.lock:
            self.in_call += 1
            self.started += 1
        time.sleep(0.2)
        with self.lock:
            self.in_call -= 1


def test_a_ctrl_c_while_engines_are_timed_waits_for_the_workers_to_stop():
    """Ctrl-C or SIGTERM during the probe's (or bench's) timing: the workers stop after their call
    and are waited for before the interrupt goes on, so the process never exits under a thread
    still inside the engine (with PyTorch that aborted it: "terminate called without an active
    exception"). Thread.join, interrupted, would have returned at once with both still running."""
    import signal

    from rtseg import signals
    from rtseg.engines.base import infer_calls

    engine = _SlowEngine()
    # SIGTERM from another thread, as the CLI gets it (whatever handlers earlier tests left)
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGTERM))
    with signals.interrupt_on_signals(), pytest.raises(KeyboardInterrupt):
        timer.start()
        infer_calls(engine, [None], 40, name="test-probe")
        time.sleep(5)  # not reached: the interrupt comes within infer_calls
    timer.join()
    assert engine.in_call == 0  # every call that started has finished
    assert engine.started < 40  # and the workers stopped early
    assert not [t for t in threading.enumerate() if t.name.startswith("test-probe")]
    before = engine.started
    infer_calls(engine, [None], 4, name="test-probe")  # uninterrupted: every call made
    assert engine.started - before == 4 and engine.in_call == 0


def test_an_error_in_a_timing_worker_reaches_the_caller():
    from rtseg.engines.base import infer_calls

    class Broken(_SlowEngine):
        def infer(self, batch):
            raise RtsegError("the engine broke")

    with pytest.raises(RtsegError, match="the engine broke"):
        infer_calls(Broken(), [None], 8, name="test-probe")
    assert not [t for t in threading.enumerate() if t.name.startswith("test-probe")]


class _Sure(_Fake):
    """A reference with scores: sure of every pixel but the top ``UNSURE`` share of the rows, where two
    classes tie."""

    has_scores = True
    UNSURE = 0.1

    def infer_scores(self, batch):
        ids = self.infer(batch)
        scores = np.zeros((len(batch), 3, *SIZE), np.float32)
        scores[:, 0] = 10.0  # class 0 (the ids' all-zero reference), sure
        rows = int(round(self.UNSURE * SIZE[0]))
        scores[:, 1, :rows] = 10.0  # a tie on the top rows: unsure
        return ids, scores


@pytest.mark.parametrize("rows_share, taken", [(0.05, True), (0.2, False)])
def test_flips_where_the_reference_is_unsure_do_not_count(fake, tiny_checkpoint, monkeypatch, rows_share, taken):
    """#37: bf16 moves the ids the network is unsure of (95% raw agreement, 0.16 mIoU points); the rule
    counts the pixels the reference is sure of, so a candidate whose flips all lie there passes, and
    one that flips sure pixels too (int8's kind of loss) does not."""
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 48.0, "openvino bf16": 20.0}
    fake["agree"] = {"openvino bf16": 1 - rows_share}  # the top rows_share of the rows differ
    plain = _Fake

    def engine(cand, agree, closed):  # the reference (pytorch fp32) gives scores
        return (_Sure if cand.label == "pytorch fp32" else plain)(cand, agree, closed)

    monkeypatch.setitem(globals(), "_Fake", engine)  # what the fixture's opener makes
    choice = fake["choose"](tiny_checkpoint)
    assert choice.about["rule"] == "sure pixels"
    assert (choice.runtime, choice.precision) == (("openvino", "bf16") if taken else ("onnxruntime", "fp32"))
    if not taken:
        assert "of the pixels the reference is sure of" in choice.rejected["openvino bf16"]


def test_a_forced_runtime_checks_its_default_precision_and_falls_back_saying_why(tiny_checkpoint, tmp_path,
                                                                                  monkeypatch):
    """--runtime openvino at --precision auto is bf16 where the CPU computes it: the same rule as auto's
    decides, against OpenVINO fp32; a bf16 that fails it runs fp32, the line saying why."""
    import rtseg.engines as engines
    import rtseg.engines.runtimes as runtimes

    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("rtseg.machine.native_bf16", lambda: True)
    assert runtimes.reduced_default("openvino", "cpu") == "bf16" and runtimes.reduced_default("onnxruntime", "cpu") is None
    opened, notes = [], []

    def fake_open_as(path, name, *, precision, **kw):
        opened.append(f"{name} {precision}")
        return _Fake(Candidate(name, precision), 0.8 if precision == "bf16" else 1.0, [])

    monkeypatch.setattr(engines, "_open_as", fake_open_as)
    monkeypatch.setattr(probe, "_timed", lambda engine, batches, calls: 0.01 if engine.cand.precision == "bf16" else 0.02)
    engines.open_engine(tiny_checkpoint, runtime="openvino", size=SIZE, note=notes.append)
    assert opened[:2] == ["openvino fp32", "openvino bf16"] and opened[-1] == "openvino fp32"
    line = [n for n in notes if n.startswith("--runtime openvino")]
    assert len(line) == 1 and line[0].startswith("--runtime openvino --precision auto: openvino fp32")
    assert "openvino bf16: ids agree on 79.7% < 97%" in line[0] and "--precision fp32 skips the check" in line[0]
    opened.clear()
    engines.open_engine(tiny_checkpoint, runtime="openvino", size=SIZE, precision="bf16", note=notes.append)
    assert opened == ["openvino bf16"]  # asked for by name: no check


def test_a_candidate_too_slow_to_load_loses_and_the_probe_keeps_its_budget(fake, tiny_checkpoint):
    """#37: a 130 MB model on a busy machine took 30 s to probe against a 5 s budget. A candidate
    whose loading and first frames outlast what is left of the budget loses, and once loading has
    used the budget the candidates left are not opened."""
    fake["ms"] = {"pytorch fp32": 55.0, "onnxruntime fp32": 38.0, "openvino fp32": 20.0, "openvino bf16": 10.0}
    t0 = time.perf_counter()
    choice = fake["choose"](tiny_checkpoint, budget_s=0.6, open_s={"onnxruntime fp32": 0.8})
    took = time.perf_counter() - t0
    assert fake["opened"] == ["pytorch fp32", "onnxruntime fp32"]  # the others: not opened
    assert choice.rejected["onnxruntime fp32"].startswith("too slow: loading and its first")
    assert choice.rejected["openvino bf16"].startswith("not measured: loading the others used the probe's 0.6 s")
    assert (choice.runtime, choice.precision) == ("pytorch", "fp32") and took < 1.5
