"""int8 quantisation: the QDQ file runs in ONNX Runtime and OpenVINO, keeps the rtseg metadata,
and gives nearly the fp32 ids on real CamVid frames; bad inputs are one-line errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from rtseg.bundled import DEFAULT_WEIGHTS
from rtseg.checkpoint import build_from_checkpoint
from rtseg.engines import load_engine
from rtseg.errors import RtsegError
from rtseg.export.onnx import META_KEY, export_onnx, read_onnx_meta
from rtseg.export.quantize import calibration_frames, quantize_onnx
from rtseg.meta import ModelMeta

SIZE = (192, 256)  # CamVid's 4:3 at a size that keeps calibration to a few seconds
# int8 vs fp32 class ids. Measured (benchmarks/cpu_engines.py) on CamVid val with trained weights;
# an untrained net has near-tied logits everywhere, so it gets a looser bar.
INT8_AGREEMENT = {"trained": 0.95, "untrained": 0.80}


@pytest.fixture(scope="module")
def weights(tiny_checkpoint) -> Path:
    return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else tiny_checkpoint


@pytest.fixture(scope="module")
def quantised(weights, camvid_root, tmp_path_factory) -> tuple[Path, Path]:
    model, meta = build_from_checkpoint(weights)
    tmp = tmp_path_factory.mktemp("int8")
    fp32 = export_onnx(model, meta, tmp / "fp32.onnx", size=SIZE)
    return fp32, quantize_onnx(fp32, tmp / "int8.onnx", camvid_root / "train", frames=4)


@pytest.mark.slow
def test_int8_runs_and_agrees_with_fp32(quantised, camvid_root, weights, record_property):
    fp32_file, int8_file = quantised
    meta = read_onnx_meta(int8_file)
    assert meta.extra["export"]["precision"] == "int8"
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(int8_file)).graph.node)
    fp32 = load_engine(fp32_file, runtime="onnxruntime")
    engines = {"onnxruntime": load_engine(int8_file, runtime="onnxruntime")}
    try:
        engines["openvino"] = load_engine(int8_file, runtime="openvino", precision="f32")
    except RtsegError:  # openvino not installed: ONNX Runtime alone
        pass
    frames = [cv2.imread(str(p)) for p in calibration_frames(camvid_root / "val", 3)]
    bar = INT8_AGREEMENT["trained" if weights == DEFAULT_WEIGHTS else "untrained"]
    for name, engine in engines.items():
        agree = []
        for frame in frames:
            ids = engine.predict(frame)
            assert ids.shape == frame.shape[:2] and int(ids.max()) < meta.num_classes
            agree.append(float((ids == fp32.predict(frame)).mean()))
        record_property(f"int8_agreement_{name}", float(np.mean(agree)))
        assert np.mean(agree) >= bar, f"{name}: int8 agrees with fp32 on {np.mean(agree):.3%} of pixels"


def _dynamic_stub(path: Path) -> Path:
    """A tiny rtseg-tagged ONNX file with a dynamic input size (no network needed)."""
    inp = helper.make_tensor_value_info("images", TensorProto.UINT8, ["n", "h", "w", 3])
    out = helper.make_tensor_value_info("ids", TensorProto.UINT8, ["n", "h", "w", 3])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["ids"])], "g", [inp], [out]))
    model.metadata_props.add(key=META_KEY, value=ModelMeta.for_dataset("camvid").to_json())
    onnx.save(model, str(path))
    return path


def test_dynamic_file_is_refused(tmp_path):
    with pytest.raises(RtsegError, match="dynamic input size; quantise a fixed-size export") as info:
        quantize_onnx(_dynamic_stub(tmp_path / "dyn.onnx"), tmp_path / "q.onnx", tmp_path)
    assert "\n" not in str(info.value)


def test_calibration_inputs_are_checked(tmp_path):
    with pytest.raises(RtsegError, match="calibration folder not found"):
        calibration_frames(tmp_path / "missing", 4)
    with pytest.raises(RtsegError, match="no calibration images"):
        calibration_frames(tmp_path, 4)
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.zeros((8, 8, 3), np.uint8))
    picked = calibration_frames(tmp_path, 4)
    assert [p.name for p in picked] == ["00.png", "02.png", "05.png", "07.png"]  # spread over the folder
    with pytest.raises(RtsegError, match="frame count must be >= 1"):
        calibration_frames(tmp_path, 0)
    with pytest.raises(RtsegError, match="must end in .onnx"):
        quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.bin", tmp_path)
