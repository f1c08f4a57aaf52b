"""benchmarks/pipeline_cpu.py runs end to end on a few frames (Linux: it reads /proc), so the
README's account of where the CPU goes in `rtseg bench` can always be measured again."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from rtseg.bundled import DEFAULT_WEIGHTS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pipeline_cpu.py"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads per-thread CPU times from /proc (Linux)")
@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="needs the bundled weights")
def test_pipeline_cpu_accounts_for_each_mode(tmp_path):
    spec = importlib.util.spec_from_file_location("pipeline_cpu", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "cpu.json"
    assert bench.main(["--frames", "16", "--rounds", "1", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    for mode in ("sequential", "pipelined"):
        (run,) = got["runs"][mode]
        assert run["fps"] > 0 and run["cpu_ms_per_frame"] > 0
        assert run["cpu_ms_per_frame"] == pytest.approx(sum(run["cpu_ms_per_frame_by_thread"].values()), abs=0.1)
        assert 0 < run["cores_busy"] <= got["cores"] + 0.5  # sampling granularity aside, no more than the cores
    # the pipelined run's stages show up as their own threads
    assert {"rtseg-read", "rtseg-post"} <= set(got["runs"]["pipelined"][0]["cpu_ms_per_frame_by_thread"])
    assert got["bound"] > 0
