"""``rtseg doctor``: every check is reported, and what it says matches this machine."""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from rtseg.cli import main


def _doctor(tmp_path, monkeypatch, capsys) -> tuple[dict, str]:
    out = tmp_path / "doctor.json"
    monkeypatch.setattr(sys, "argv", ["rtseg", "doctor", "--json", str(out)])
    monkeypatch.setenv("COLUMNS", "160")
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    checks = json.loads(out.read_text())
    return {(c["section"], c["name"]): c for c in checks}, capsys.readouterr().out


def test_doctor_reports_each_engine_as_this_machine_has_it(tmp_path, monkeypatch, capsys):
    checks, text = _doctor(tmp_path, monkeypatch, capsys)
    assert {s for s, _ in checks} >= {"system", "engines", "video", "files", "usable"}
    assert "rtseg doctor" in text
    for package in ("onnxruntime", "openvino", "tensorrt", "pycuda"):
        installed = importlib.util.find_spec(package) is not None
        row = checks[("engines", package)]
        assert row["ok"] is installed or (installed and row["ok"] is False and "import fails" in row["detail"])
        if not installed:
            assert "not installed" in row["detail"] and "pip install" in row["detail"]
    assert checks[("usable", "pytorch (.pt)")]["ok"] is True  # torch is a core dependency
    import torch

    if not torch.cuda.is_available():
        assert checks[("usable", "tensorrt (.plan)")]["ok"] is False
    from rtseg.bundled import DEFAULT_WEIGHTS

    if DEFAULT_WEIGHTS.is_file():  # nothing cached in the tests' cache at first: measured once, then cached
        auto = [c for (s, _), c in checks.items() if s == "auto" and c["ok"]]
        assert auto and auto[0]["version"].split()[0] in ("pytorch", "onnxruntime", "openvino")
        assert "ms" in auto[0]["detail"]


def test_doctor_finds_the_bundled_files_and_h264(tmp_path, monkeypatch, capsys):
    from rtseg.bundled import DEFAULT_WEIGHTS
    from rtseg.pipeline.sinks import h264_available

    checks, _ = _doctor(tmp_path, monkeypatch, capsys)
    assert checks[("files", "bundled weights")]["ok"] is DEFAULT_WEIGHTS.is_file()
    assert checks[("video", "H.264 output (PyAV)")]["ok"] is h264_available()


def test_doctor_lists_auto_choices_cached_for_this_machine(tmp_path, monkeypatch, capsys):
    from rtseg.engines import probe
    from rtseg.machine import machine_key

    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    about = {"weights": "w.pt", "size": [64, 96], "device": "cpu", "streams": 2, "probe_s": 1.2, "when": "today"}
    probe._store("k1", probe.Choice("onnxruntime", "fp32", {"onnxruntime fp32": 38.0, "pytorch fp32": 55.3},
                                    about={**about, "machine_key": machine_key(), "busy_other": 0.6}))
    probe._store("k2", probe.Choice("openvino", "bf16", {"openvino bf16": 20.0}, about={**about, "machine_key": "x"}))
    monkeypatch.setattr(sys, "argv", ["rtseg", "doctor", "--no-measure", "--json", str(tmp_path / "d.json")])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main()
    checks = {(c["section"], c["name"]): c for c in json.loads((tmp_path / "d.json").read_text())}
    row = checks[("auto", "w.pt at 64x96 on cpu, 2 stream(s)")]
    assert row["version"] == "onnxruntime fp32" and row["detail"].startswith("onnxruntime fp32 38.0 ms, pytorch fp32 55.3 ms")
    assert "other work used 60% of the CPU; provisional: the next run measures again" in row["detail"]
    assert "1 choice(s) cached for another CPU" in checks[("auto", "other machines")]["detail"]
    assert "onnxruntime fp32" in capsys.readouterr().out
    cpu = checks[("system", "cpu")]
    assert cpu["version"] and "flags:" in cpu["detail"]


def test_doctor_without_a_cached_choice_and_no_measuring_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "argv", ["rtseg", "doctor", "--no-measure", "--json", str(tmp_path / "d.json")])
    with pytest.raises(SystemExit):
        main()
    checks = {(c["section"], c["name"]): c for c in json.loads((tmp_path / "d.json").read_text())}
    assert "none cached for this machine" in checks[("auto", "choices")]["detail"]
