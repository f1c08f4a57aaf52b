"""Fast by default: `rtseg run` with no --runtime and no --size runs the bundled .pt on the
fastest runtime here (exported once into the cache) at a size in the frame's shape, says so,
and writes the run's JSON; an explicit size that stretches frames gets a one-line warning."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from pipeline_fakes import count_frames, write_video  # noqa: E402

from rtseg.bundled import DEFAULT_WEIGHTS  # noqa: E402
from rtseg.cli.run import note  # noqa: E402
from rtseg.engines import default_size, open_engine  # noqa: E402


def test_default_size_keeps_the_frame_shape_for_artifacts_that_take_any_size(tiny_checkpoint, tmp_path):
    from rtseg.formats.checkpoint import build_from_checkpoint
    from rtseg.export.onnx import export_onnx

    assert default_size(tiny_checkpoint, (540, 960)) == (312, 552)  # 360x480's pixels, 16:9
    assert default_size(tiny_checkpoint, (720, 960)) == (360, 480)  # same shape: the checkpoint's own
    model, meta = build_from_checkpoint(tiny_checkpoint)
    fixed = export_onnx(model, meta, tmp_path / "fixed.onnx", size=(64, 96))
    dynamic = export_onnx(model, meta, tmp_path / "dynamic.onnx", size=(64, 96), dynamic=True)
    assert default_size(fixed, (540, 960)) is None  # a fixed-size export keeps its size
    assert default_size(dynamic, (540, 960)) == (64, 112)  # the nearer shape of 56x96 and 64x112


def test_a_size_that_stretches_the_frames_is_said_in_one_line(tiny_checkpoint, capsys):
    engine = open_engine(tiny_checkpoint, device="cpu", size="360x480", runtime="pytorch", frame_size=(540, 960),
                         note=note)  # the CLI's notices: one line on stderr
    assert engine.input_size == (360, 480)
    err = capsys.readouterr().err
    assert "warning: inference at 360x480 stretches the 540x960 frames by 25%" in err and len(err.strip().splitlines()) == 1
    open_engine(tiny_checkpoint, device="cpu", size="312x552", runtime="pytorch", frame_size=(540, 960), note=note)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="needs the bundled weights")
def test_default_run_is_fast_runtime_in_the_frame_shape_with_a_json_summary(tmp_path):
    clip = write_video(tmp_path / "wide.mp4", 6, size=(540, 960))
    cmd = [sys.executable, "-m", "rtseg.cli", "run", str(clip), "-o", str(tmp_path / "out.mp4"), "--json",
           str(tmp_path / "run.json")]
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "exporting fastscnn_camvid.pt to ONNX at 312x552" in first.stderr  # once, said in one line
    assert "source wide: 540x960 at 12 fps" in first.stdout  # sizes HxW, as --size takes them
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["runtime"] in ("openvino", "onnxruntime") and summary["input_size"] == [312, 552]
    assert summary["source_size"] == [540, 960] and summary["frames"] == 6 and summary["fps"] > 0
    assert set(summary["stages_ms"]) == {"read", "transform", "infer", "post", "write"}
    assert set(summary) >= {"source", "weights", "device", "streams", "wall_s", "dropped", "latency_ms"}
    assert count_frames(tmp_path / "out.mp4")[0] == 6
    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "exporting" not in second.stderr  # the cache: no second export
