"""``--resize letterbox`` (#39): a frame keeps its aspect inside the model's input, the rest grey
114 as ultralytics pads it, and the ids come back over the frame alone, on every runtime, with
the temporal filter and the confidence outputs, and the ultralytics files choose it by themselves."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from rtseg.engines import open_engine
from rtseg.engines.base import LETTERBOX_GREY, letterbox_box

BLUE, GREEN = (255, 0, 0), (0, 255, 0)  # BGR


@pytest.mark.parametrize("frame, size, box", [
    ((360, 480), (384, 640), (0, 64, 384, 512)),  # narrower: bands left and right
    ((540, 960), (384, 640), (12, 0, 360, 640)),  # wider: bands above and below
    ((1080, 1920), (640, 640), (140, 0, 360, 640)),
    ((100, 333), (64, 64), (22, 0, 19, 64)),  # an odd band: ultralytics puts the extra row below
    ((384, 640), (384, 640), (0, 0, 384, 640)),  # the model's own shape: no band
])
def test_the_frame_lies_where_ultralytics_puts_it(frame, size, box):
    """Worked by hand from ultralytics' LetterBox(auto=False, center=True): r = min(h/H, w/W), the
    scaled sides rounded, the padding halved, top = round(dh/2 - 0.1)."""
    assert letterbox_box(frame, size) == box


def _channels_model(path: Path, size=(384, 640), props: dict | None = None) -> Path:
    """Scores = the RGB input itself (3 classes: red, green, blue), at a fixed size: each pixel's id
    says which colour the network saw there; the grey padding ties, so it is class 0 (red)."""
    import onnx

    net = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, *size),), str(path), input_names=["images"],
                          output_names=["output0"], opset_version=17, dynamo=False)
    model = onnx.load(str(path))
    for k, v in (props or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


ULTRALYTICS = {"author": "Ultralytics", "task": "semantic", "imgsz": "[384, 640]",
               "names": "{0: 'red', 1: 'green', 2: 'blue'}"}


def _half_and_half(h: int, w: int) -> np.ndarray:
    frame = np.empty((h, w, 3), np.uint8)
    frame[:, : w // 2], frame[:, w // 2:] = BLUE, GREEN
    return frame


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("frame_size", [(360, 480), (540, 960)])
def test_letterboxed_ids_cover_the_frame_only_on_each_runtime(tmp_path, cache, runtime, frame_size):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    model = _channels_model(tmp_path / "m.onnx", props=ULTRALYTICS)
    notes: list[str] = []
    engine = open_engine(model, runtime=runtime, precision="fp32", note=notes.append)
    assert engine.resize == "letterbox"
    assert any("resize" in n and "letterboxed" in n for n in notes), notes
    frame = _half_and_half(*frame_size)
    batch = engine.preprocess([frame])[0]
    top, left, nh, nw = letterbox_box(frame_size, (384, 640))
    padding = np.ones((384, 640), bool)
    padding[top:top + nh, left:left + nw] = False
    assert (batch[padding] == LETTERBOX_GREY).all()  # the bands grey, as ultralytics pads
    assert np.array_equal(batch[top:top + nh, left:left + nw], cv2.resize(frame, (nw, nh)))  # the frame, unstretched
    ids = engine.predict(frame)
    assert ids.shape == frame_size
    assert not (ids == 0).any()  # no grey padding came back as a class
    h, w = frame_size
    assert (ids[:, : w // 2 - 1] == 2).all() and (ids[:, w // 2 + 1:] == 1).all()  # the edge where it is in the frame


def test_stretch_overrides_the_files_letterbox(tmp_path, cache):
    model = _channels_model(tmp_path / "m.onnx", props=ULTRALYTICS)
    engine = open_engine(model, runtime="onnxruntime", resize="stretch", note=lambda _: None)
    assert engine.resize == "stretch"
    batch = engine.preprocess([_half_and_half(360, 480)])[0]
    assert not (batch == LETTERBOX_GREY).all(axis=2).any()  # no band: the frame fills the input


def test_a_bad_resize_is_one_line():
    from rtseg.errors import RtsegError
    from rtseg.pipeline.spec import RunSpec

    with pytest.raises(RtsegError, match="--resize 'pad'.*stretch or letterbox"):
        RunSpec.from_options("clip.mp4", resize="pad")


def test_a_run_with_letterbox_keeps_the_ids_scores_and_confidence_over_the_frame(tmp_path, cache, rtseg_cli,
                                                                                 monkeypatch):
    """The whole run: masks at the frame's size with no padding class, the temporal filter and the
    confidence PNGs (both from the scores, cut the same way) agree with the ids."""
    monkeypatch.chdir(tmp_path)
    model = _channels_model(tmp_path / "m.onnx", props=ULTRALYTICS)
    clip = tmp_path / "clip.mp4"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (480, 360))
    for _ in range(4):
        out.write(_half_and_half(360, 480))
    out.release()
    code, _, err = rtseg_cli("run", clip, "--engine", model, "--runtime", "onnxruntime", "--precision", "fp32",
                             "--temporal", "on", "--masks", "m", "--confidence", "c", "-o", "o.mp4", "--json", "r.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["resize"] == "letterbox" and "from the file's ultralytics metadata" in doc["tool_files"]
    masks = sorted((tmp_path / "m").glob("*.png"))
    assert len(masks) == 4
    for path in masks:
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert ids.shape == (360, 480) and not (ids == 0).any()
        assert (ids[:, :200] == 2).all() and (ids[:, 280:] == 1).all()
    conf = cv2.imread(str(sorted((tmp_path / "c").glob("*.png"))[-1]), cv2.IMREAD_UNCHANGED)
    assert conf.shape == (360, 480) and conf[:, :200].min() > 80  # sure of blue where blue is (not the grey ties)
    assert json.loads((tmp_path / "m" / "classes.json").read_text())["classes"][2]["name"] == "blue"


def test_a_hugging_face_models_frames_are_resized_by_pillow_as_its_processor_does(tmp_path, cache):
    """preprocessor_config.json's ``resample`` (a PIL filter: 2 bilinear) makes rtseg resize with
    Pillow: antialiased when shrinking, where OpenCV's INTER_LINEAR is not, so the input differs."""
    from PIL import Image

    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "red", "1": "green", "2": "blue"}}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 2,
         "size": {"height": 96, "width": 128}}))
    model = _channels_model(tmp_path / "m.onnx", size=(96, 128))
    notes: list[str] = []
    engine = open_engine(model, runtime="onnxruntime", note=notes.append)
    assert "resample" in " ".join(notes)
    frame = (np.random.default_rng(0).random((360, 480, 3)) * 255).astype(np.uint8)  # fine detail: filters differ
    theirs = np.asarray(Image.fromarray(frame).resize((128, 96), resample=Image.BILINEAR))
    assert np.array_equal(engine.preprocess([frame])[0], theirs)
    assert not np.array_equal(theirs, cv2.resize(frame, (128, 96), interpolation=cv2.INTER_LINEAR))
