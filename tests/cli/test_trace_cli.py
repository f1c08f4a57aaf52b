"""``rtseg run --trace`` and ``rtseg bench --trace`` (the fake engine): a Chrome trace that parses,
with every stage's slices; a missing folder is a one-line error."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from pipeline_fakes import write_video  # noqa: E402
from test_run import rtseg  # noqa: E402,F401  (the fixture: the console entry point with the fake engine)


def _slices(path: Path) -> Counter:
    events = json.loads(path.read_text())["traceEvents"]
    return Counter((e["pid"], e["name"]) for e in events if e["ph"] == "X" and not e["name"].startswith("wait"))


def test_run_writes_a_trace(rtseg, tmp_path):
    clip = write_video(tmp_path / "in.mp4", 6)
    res = rtseg("run", clip, "-o", tmp_path / "o.mp4", "--trace", tmp_path / "trace.json", "-q")
    assert res.returncode == 0, res.stderr
    assert "wrote the trace" in res.stdout
    assert _slices(tmp_path / "trace.json") == {(1, s): 6 for s in ("read", "transform", "infer", "post", "write")}


def test_bench_traces_its_first_round(rtseg, tmp_path):
    clip = write_video(tmp_path / "in.mp4", 5)
    res = rtseg("bench", clip, "--frames", "5", "--rounds", "2", "--trace", tmp_path / "trace.json")
    assert res.returncode == 0, res.stderr
    counts = _slices(tmp_path / "trace.json")
    assert len({pid for pid, _ in counts}) == 2  # the sequential run and the pipelined run
    assert set(counts.values()) == {5}  # each stage of each of the two runs, once a frame


@pytest.mark.parametrize("command", ["run", "bench"])
def test_trace_into_a_missing_folder_is_a_one_line_error(rtseg, tmp_path, command):
    clip = write_video(tmp_path / "in.mp4", 3)
    res = rtseg(command, clip, "--trace", tmp_path / "nope" / "t.json")
    assert res.returncode == 2
    assert "--trace" in res.stderr and "does not exist" in res.stderr and "Traceback" not in res.stderr
