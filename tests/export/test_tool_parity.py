"""#39: models made by the tools themselves (ultralytics' own yolo26n-sem export, a Hugging Face
SegFormer with its config.json and preprocessor_config.json) run with no flags, and rtseg's ids
agree with the tool's own prediction on the same frames, at fp32.

The tools run in their own Python, ``RTSEG_TOOLS_PYTHON`` (a virtual environment with ultralytics
and transformers: .ci/run makes one; see tests/export/tool_models.py for how it is installed), so
their torchvision and dependencies never meet rtseg's. Without it these tests skip.

What "agree" means here. The tool's preprocessing and network are checked exactly: the ids
rtseg's engine computes over the frame, at the model's own resolution, enlarged to the frame the
way the tool enlarges them, must equal the tool's on >= 99% of pixels (for ultralytics they are
all equal). rtseg's own enlargement aligns pixel centres (rtseg.viz.resize_nearest) where
ultralytics' ``F.interpolate(mode="nearest")`` takes the top-left source pixel, so at the frame's
size the two differ along class edges by up to a pixel; a random-weight map is nearly all edges,
so that figure is printed and only bounded loosely. Likewise Hugging Face's post-processing
enlarges the scores to the frame and takes the argmax there, where rtseg takes it at the input
size and enlarges the ids (the cheap way at 1024x2048): the test checks rtseg's preprocessing
exactly (its resize, the normalisation and channel order it read, through the file and Hugging
Face's own enlargement), and bounds rtseg's frame-size ids loosely."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rtseg.bundled import DEMO_CLIP
from rtseg.engines import open_engine

TOOLS_PYTHON = os.environ.get("RTSEG_TOOLS_PYTHON")
pytestmark = pytest.mark.skipif(
    not TOOLS_PYTHON or not Path(TOOLS_PYTHON).is_file(),
    reason="RTSEG_TOOLS_PYTHON (a Python with ultralytics and transformers) is not set: .ci/run sets it")


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> dict[str, np.ndarray]:
    """4 demo frames at 360x480 and the same enlarged to 540x960 (a narrower and a wider shape than
    ultralytics' 384x640, so the letterbox pads the sides in one and above and below in the other)."""
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    picked = []
    for i in range(40):
        ok, frame = cap.read()
        assert ok
        if i % 10 == 0:
            picked.append(frame)
    cap.release()
    shots = {f"f{i}": f for i, f in enumerate(picked)}
    shots.update({f"f{i + 4}": cv2.resize(f, (960, 540), interpolation=cv2.INTER_LINEAR) for i, f in enumerate(picked)})
    return shots


def _made_by(tool: str, frames: dict, folder: Path) -> tuple[Path, dict, dict[str, np.ndarray]]:
    frames_file = folder / "frames.npz"
    np.savez(frames_file, **frames)
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}  # ultralytics: no network, no update checks
    done = subprocess.run([TOOLS_PYTHON, str(Path(__file__).with_name("tool_models.py")), tool, str(frames_file),
                           str(folder / tool)], capture_output=True, text=True, timeout=600, env=env, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    made = json.loads((folder / tool / "made.json").read_text())
    with np.load(folder / tool / "predicted.npz") as npz:
        predicted = {k: npz[k] for k in npz.files}
    return folder / tool / made["model"], made, predicted


def _torch_nearest(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Enlarged as ultralytics and torch do it: ``F.interpolate(mode="nearest")``."""
    t = torch.from_numpy(ids)[None, None].float()
    return torch.nn.functional.interpolate(t, size, mode="nearest")[0, 0].numpy().astype(np.uint8)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_ultralytics_own_export_matches_ultralytics_predict(tmp_path, monkeypatch, frames, runtime):
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    model, made, predicted = _made_by("ultralytics", frames, tmp_path)
    notes: list[str] = []
    engine = open_engine(model, runtime=runtime, precision="fp32", note=notes.append)  # no flags
    said = " ".join(notes)
    assert "from the file's ultralytics metadata (19 classes, x/255, RGB, letterboxed)" in said
    assert "ends in an ArgMax" in said  # its scores exposed, so --temporal and the confidence work
    assert engine.resize == "letterbox" and engine.input_size == tuple(made["imgsz"])
    for key, frame in frames.items():
        theirs = predicted[key]
        assert len(np.unique(theirs)) >= 10  # a map with regions, not one class
        own = engine.to_frame(engine.infer(engine.preprocess([frame]))[0], frame.shape[:2])
        same = (_torch_nearest(own, frame.shape[:2]) == theirs).mean()
        at_frame = (engine.predict(frame) == theirs).mean()
        print(f"ultralytics {key} {frame.shape[:2]} {runtime}: the model's ids {same:.4%} equal, "
              f"at the frame's size {at_frame:.4%}")
        assert same >= 0.99
        assert at_frame >= 0.85  # the enlargement's pixel alignment only (see the module's docstring)


def test_ultralytics_own_openvino_export_matches_ultralytics_predict(tmp_path, monkeypatch, frames):
    """Its ``format="openvino"`` folder (the .xml, .bin and metadata.yaml) as ``--engine``, both at
    fp32 (tool_models.py pins ultralytics' OpenVINO to it: bf16's rounding on a random-weight model
    would swamp the comparison)."""
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    _, made, _ = _made_by("ultralytics", frames, tmp_path)
    with np.load(tmp_path / "ultralytics" / "predicted_openvino.npz") as npz:
        predicted = {k: npz[k] for k in npz.files}
    precision = "fp32"
    notes: list[str] = []
    engine = open_engine(tmp_path / "ultralytics" / made["openvino_model"], runtime="openvino", precision=precision,
                         note=notes.append)
    assert "from ultralytics' metadata.yaml beside it (19 classes, x/255, RGB, letterboxed)" in " ".join(notes)
    for key, frame in frames.items():
        theirs = predicted[key]
        own = engine.to_frame(engine.infer(engine.preprocess([frame]))[0], frame.shape[:2])
        same = (_torch_nearest(own, frame.shape[:2]) == theirs).mean()
        print(f"ultralytics openvino {key} {frame.shape[:2]} {precision}: the model's ids {same:.4%} equal")
        assert same >= 0.99


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_hugging_face_segformer_matches_its_post_processing(tmp_path, monkeypatch, frames, runtime):
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    model, made, predicted = _made_by("segformer", frames, tmp_path)
    notes: list[str] = []
    engine = open_engine(model, runtime=runtime, precision="fp32", note=notes.append)
    said = " ".join(notes)
    assert "classes, normalize, resample, size from Hugging Face's config.json and preprocessor_config.json" in said
    assert engine.meta.class_names == ("road", "car", "person", "sky", "tree", "building")
    import onnxruntime as ort

    raw = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])  # the file itself, unwrapped
    mean, std = np.array(engine.meta.mean), np.array(engine.meta.std)
    for key, frame in frames.items():
        theirs = predicted[key]
        assert len(np.unique(theirs)) >= 4
        rgb = engine.preprocess([frame])[0][..., ::-1] / 255.0  # rtseg's resize (Pillow's, as theirs), RGB
        x = ((rgb - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)  # the normalisation rtseg read
        logits = torch.from_numpy(raw.run(None, {"pixel_values": x})[0])
        up = torch.nn.functional.interpolate(logits, frame.shape[:2], mode="bilinear", align_corners=False)
        same = (up.argmax(1)[0].numpy() == theirs).mean()  # as post_process_semantic_segmentation does
        at_frame = (engine.predict(frame) == theirs).mean()
        print(f"segformer {key} {frame.shape[:2]} {runtime}: rtseg's input gives {same:.4%} equal ids, "
              f"rtseg's ids at the frame's size {at_frame:.4%}")
        assert same >= 0.99
        assert at_frame >= 0.95  # ids enlarged from the input size, not scores from 1/4 (module docstring)
