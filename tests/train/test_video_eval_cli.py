"""`rtseg eval --video`: TC, flip rate and mIoU of the bundled CamVid clip through the run pipeline,
with and without the temporal filter; `--temporal` on `rtseg run`; one-line errors (exit 2)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtseg.bundled import DEMO_CLIP

FRAMES = 30  # of the clip's 101: enough for the filter to matter, quick enough for a test


def test_eval_video_on_the_bundled_clip(cli, shared_data: Path, tmp_path: Path):
    labels = shared_data / "camvid" / "valannot"
    order = shared_data / "video" / "camvid_0016E5_val_15fps.frames.txt"
    docs = {}
    for temporal in ("off", "on"):
        path = tmp_path / f"{temporal}.json"
        code, out, err = cli("eval", "--video", DEMO_CLIP, "--labels", labels, "--order", order, "--runtime", "pytorch",
                             "--limit", FRAMES, "--temporal", temporal, "--json", path)
        assert code == 0, err
        assert "TC" in out and "flip rate" in out
        docs[temporal] = doc = json.loads(path.read_text())
        assert {"tc", "flip_rate", "miou", "frames", "labelled", "temporal", "per_class_iou"} <= set(doc)
        assert (doc["frames"], doc["labelled"], doc["temporal"]) == (FRAMES, FRAMES, temporal)
        assert 0.5 < doc["tc"] <= 1.0 and 0.0 < doc["flip_rate"] < 0.2 and 0.5 < doc["miou"] <= 1.0
    off, on = docs["off"], docs["on"]
    assert on["tc"] > off["tc"] and on["flip_rate"] < off["flip_rate"]  # the masks hold stiller
    assert on["miou"] > off["miou"] - 0.01  # and are not worse (shipped weights: the clip is not held out)

    code, out, err = cli("eval", "--video", DEMO_CLIP, "--runtime", "pytorch", "--limit", 3, "--json", tmp_path / "n.json",
                         "--plots", tmp_path / "plots")
    assert code == 0, err
    doc = json.loads((tmp_path / "n.json").read_text())
    assert doc["miou"] is None and doc["labelled"] == 0 and doc["tc"] is not None and doc["frames"] == 3
    assert len(doc["tc_per_frame"]) == len(doc["flip_rate_per_frame"]) == 2  # a value per pair of frames
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["tc.png"]  # no labels: no IoU bars


@pytest.mark.parametrize("args,message", [
    (["--temporal", "on"], "apply to --video"),
    (["--video", str(DEMO_CLIP), "--temporal", "maybe"], "--temporal must be auto, on or off"),
    (["--video", str(DEMO_CLIP), "--labels", "/nonexistent"], "is not a folder"),
    (["--video", str(DEMO_CLIP), "--order", "x.txt"], "--order needs --labels"),
])
def test_eval_video_errors_are_one_line(cli, args, message):
    code, out, err = cli("eval", *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_run_temporal_on_and_its_errors(cli, tmp_path: Path, tiny_checkpoint: Path):
    from rtseg.export.onnx import export_onnx
    from rtseg.formats.checkpoint import build_from_checkpoint

    out_video = tmp_path / "on.mp4"
    code, out, err = cli("run", DEMO_CLIP, "--engine", tiny_checkpoint, "--runtime", "pytorch", "--temporal", "on",
                         "--max-frames", 4, "-o", out_video, "-q")
    assert code == 0, err
    assert out_video.is_file() and out_video.stat().st_size > 0
    code, _, err = cli("run", DEMO_CLIP, "--temporal", "maybe", "-o", tmp_path / "x.mp4")
    assert code == 2 and "--temporal must be auto, on or off" in err
    model, meta = build_from_checkpoint(tiny_checkpoint)
    ids_only = export_onnx(model, meta, tmp_path / "ids_only.onnx", size=(360, 480), scores=False)
    code, _, err = cli("run", DEMO_CLIP, "--engine", ids_only, "--runtime", "onnxruntime", "--temporal", "on",
                       "--max-frames", 2, "-o", tmp_path / "y.mp4")
    assert code == 2 and "'scores' output" in err and "Traceback" not in err
    assert not (tmp_path / "y.mp4").exists()  # refused before any output was made


def test_run_default_is_auto(cli, tmp_path: Path, tiny_checkpoint: Path):
    """With no --temporal, a video gets the filter where the engine gives scores, and an engine
    without scores runs without it instead of failing; the run's first lines say which."""
    from rtseg.export.onnx import export_onnx
    from rtseg.formats.checkpoint import build_from_checkpoint

    code, out, err = cli("run", DEMO_CLIP, "--engine", tiny_checkpoint, "--runtime", "pytorch", "--max-frames", 3,
                         "-o", tmp_path / "a.mp4", "--json", tmp_path / "a.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "a.json").read_text())
    assert "temporal filter on" in out and "temporal_ms" in doc and "temporal" not in doc["stages_ms"]
    model, meta = build_from_checkpoint(tiny_checkpoint)
    ids_only = export_onnx(model, meta, tmp_path / "ids_only.onnx", size=(360, 480), scores=False)
    code, out, err = cli("run", DEMO_CLIP, "--engine", ids_only, "--runtime", "onnxruntime", "--max-frames", 3,
                         "-o", tmp_path / "b.mp4", "--json", tmp_path / "b.json")
    assert code == 0, err
    assert "temporal filter off (auto: the engine gives no class scores)" in " ".join(out.split())  # wrapped or not
    assert "temporal_ms" not in json.loads((tmp_path / "b.json").read_text())
