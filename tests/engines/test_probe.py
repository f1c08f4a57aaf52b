"""``--runtime auto`` by measurement (rtseg/engines/probe.py): the fastest candidate whose ids
agree with the reference wins, the choice is cached per machine and weights, a changed machine
measures again, and a precision nothing here computes is one line. Timings are mocked for the
selection logic; one real probe runs at a tiny size."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rtseg import machine
from rtseg.engines import open_engine, probe
from rtseg.engines.probe import Candidate
from rtseg.errors import RtsegError

SIZE = (64, 96)


class _Fake:
    """What the probe needs of an engine: a name, streams, preprocess and infer."""

    streams = 1

    def __init__(self, cand: Candidate):
        self.cand = cand

    def preprocess(self, frames):
        return np.stack(frames)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A private cache; measure() mocked: ms and the share of ids that match the reference per label."""
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    plan = {"ms": {}, "agree": {}, "opened": []}

    def measure(engine, frames, budget_s):
        label = engine.cand.label
        ids = [np.zeros(SIZE, np.uint8) for _ in frames]
        wrong = int(round((1 - plan["agree"].get(label, 1.0)) * SIZE[0]))
        for one in ids:
            one[:wrong] = 1  # that share of the rows disagree with the reference's all-zero ids
        return plan["ms"][label], ids

    monkeypatch.setattr(probe, "measure", measure)
    monkeypatch.setattr(probe, "candidates", lambda family, cuda, precision="auto": [
        c for i, c in enumerate([Candidate("pytorch", "fp32"), Candidate("onnxruntime", "fp32"),
                                 Candidate("openvino", "fp32"), Candidate("openvino", "bf16")])
        if i == 0 or precision in ("auto", c.precision)])

    def choose(weights, precision="auto", notes=None):
        def opener(cand):
            plan["opened"].append(cand.label)
            return _Fake(cand)

        return probe.choose(weights, "pytorch", size=SIZE, device="cpu", cuda=False, streams=2, threads=0,
                            precision=precision, opener=opener, note=(notes if notes is not None else []).append)

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
