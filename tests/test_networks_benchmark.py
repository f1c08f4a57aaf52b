"""benchmarks/networks.py runs end to end at a tiny size, so the README's "choosing a network"
table can always be regenerated: one row per registered network with its parameters, MACs and a
latency per runtime."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import rtseg

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "networks.py"


def _load():
    spec = importlib.util.spec_from_file_location("networks_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_networks_benchmark_writes_a_row_per_network(tmp_path):
    bench = _load()
    out = tmp_path / "networks.json"
    assert bench.main(["--sizes", "64x96", "--runs", "3", "--warmup", "0", "--runtimes", "pytorch,onnxruntime",
                       "--json", str(out)]) == 0
    rows = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    assert sorted(rows) == rtseg.list_models()
    for name, row in rows.items():
        net = rtseg.create_model(name, num_classes=11)
        assert row["params"] == sum(p.numel() for p in net.parameters())
        assert row["gmacs"]["64x96"] > 0
        assert set(row["latency_ms"]["64x96"]) == {"pytorch", "onnxruntime"}
        assert all(v["median_ms"] > 0 for v in row["latency_ms"]["64x96"].values())
    # MACs scale with the pixel count (convolutions dominate): U-Net, the widest, costs the most.
    assert max(rows, key=lambda n: rows[n]["gmacs"]["64x96"]) == "unet"


def test_networks_benchmark_rejects_unknown_names():
    bench = _load()
    with pytest.raises(SystemExit):
        bench.main(["--models", "segformer"])
    with pytest.raises(SystemExit):
        bench.main(["--runtimes", "tensorrt"])
