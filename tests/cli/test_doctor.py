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


def test_doctor_finds_the_bundled_files_and_h264(tmp_path, monkeypatch, capsys):
    from rtseg.bundled import DEFAULT_WEIGHTS
    from rtseg.pipeline.sinks import h264_available

    checks, _ = _doctor(tmp_path, monkeypatch, capsys)
    assert checks[("files", "bundled weights")]["ok"] is DEFAULT_WEIGHTS.is_file()
    assert checks[("video", "H.264 output (PyAV)")]["ok"] is h264_available()
