"""ONNX export: parity with PyTorch in ONNX Runtime at the sizes that break public Fast-SCNN
exports (pyramid pooling bins that do not divide the map, sizes not multiple of 32), a dynamic
export, the metadata round trip and the fp16 export's agreement with fp32."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.export.onnx import export_onnx
from rtseg.formats.onnx_meta import read_onnx_meta
from rtseg.meta import ModelMeta
from rtseg.nets.deploy import DeployModel

META = ModelMeta.for_dataset("camvid", input_size=(360, 480))


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return rtseg.create_model("fastscnn", num_classes=11).eval()


@pytest.fixture(scope="module")
def reference(net) -> DeployModel:
    return DeployModel(net, META).eval()


def _frames(street_frame: np.ndarray, size: tuple[int, int], n: int = 1) -> np.ndarray:
    """n real frames at ``size``: the street frame and its mirror image."""
    h, w = size
    frame = cv2.resize(street_frame, (w, h), interpolation=cv2.INTER_AREA)
    return np.stack([frame if i % 2 == 0 else frame[:, ::-1] for i in range(n)])


def _run(path, batch: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["ids"], {"images": batch})[0]


def _agreement(path, reference, batch) -> float:
    got = _run(path, batch)
    with torch.inference_mode():
        want = reference(torch.from_numpy(batch)).numpy()
    assert got.dtype == np.uint8 and got.shape == want.shape == batch.shape[:3]
    return float((got == want).mean())


@pytest.mark.parametrize("size", [(512, 1024), (720, 1280), (360, 480),
                                  pytest.param((1024, 2048), marks=pytest.mark.slow)])
def test_static_export_matches_pytorch(tmp_path, net, reference, street_frame, size):
    # At 1024x2048 the 1/32 map is 32x64 (bins 3 and 6 do not divide it); 720x1280 and 360x480
    # are not multiples of 32 at all.
    path = export_onnx(net, META, tmp_path / "m.onnx", size=size)
    onnx.checker.check_model(str(path))
    assert _agreement(path, reference, _frames(street_frame, size)) >= 0.999


def test_static_graph_is_plain(tmp_path, net):
    pytest.importorskip("onnxscript")  # without it the graph is valid but not constant-folded
    path = export_onnx(net, META, tmp_path / "m.onnx", size=(360, 480))
    model = onnx.load(str(path))
    ops = Counter(n.op_type for n in model.graph.node)
    assert set(ops) <= {"Conv", "Relu", "Add", "MatMul", "Resize", "Concat", "Transpose", "Cast", "Sub", "ArgMax"}, ops
    assert ops["ArgMax"] == 1
    # The normalisation is folded (rtseg.export.fold): the first conv reads the pixels less the
    # ImageNet mean (Fast-SCNN's first conv is padded, so the shift stays as one Sub), no 1x1 conv.
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    sub = next(n for n in model.graph.node if n.op_type == "Sub")
    assert ops["Sub"] == 1 and first.input[0] == sub.output[0]
    weight = next(i for i in model.graph.initializer if i.name == first.input[1])
    assert weight.dims[1:] == [3, 3, 3]  # the network's own 3x3 conv on 3 channels, now on raw pixels
    (inp,), (out, scores) = model.graph.input, model.graph.output
    assert (inp.name, inp.type.tensor_type.elem_type) == ("images", onnx.TensorProto.UINT8)
    assert (out.name, out.type.tensor_type.elem_type) == ("ids", onnx.TensorProto.UINT8)
    assert (scores.name, scores.type.tensor_type.elem_type) == ("scores", onnx.TensorProto.FLOAT16)  # temporal filter
    assert [d.dim_value for d in scores.type.tensor_type.shape.dim] == [1, META.num_classes, 45, 60]
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 360, 480, 3]


def test_dynamic_export_runs_at_any_size_and_batch(tmp_path, net, reference, street_frame):
    path = export_onnx(net, META, tmp_path / "dyn.onnx", size=(360, 480), dynamic=True)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "height", "width", 3]
    for size, n in zip([(360, 480), (720, 1280), (100, 77), (512, 1024)], [2, 1, 3, 1]):
        assert _agreement(path, reference, _frames(street_frame, size, n)) >= 0.999, size
    assert read_onnx_meta(path).extra["export"]["dynamic"] is True


def test_metadata_round_trip(tmp_path, net):
    meta = ModelMeta.for_dataset("camvid", input_size=(360, 480), extra={"val_miou": 0.61})
    path = export_onnx(net, meta, tmp_path / "m.onnx", size=(256, 320))
    got = read_onnx_meta(path)
    assert got.input_size == (256, 320)  # the size the artifact was made for
    assert (got.model, got.num_classes, got.class_names, got.palette, got.mean, got.std, got.dataset) == (
        meta.model, meta.num_classes, meta.class_names, meta.palette, meta.mean, meta.std, meta.dataset)
    assert got.extra["val_miou"] == 0.61
    assert got.extra["export"] == {"format": "onnx", "precision": "fp32", "dynamic": False, "opset": 17,
                                   "outputs": ["ids", "scores"]}


def test_read_onnx_meta_errors(tmp_path):
    with pytest.raises(RtsegError, match="not found"):
        read_onnx_meta(tmp_path / "none.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 this is not a protobuf" * 50)
    with pytest.raises(RtsegError, match="not a readable ONNX file"):
        read_onnx_meta(garbage)
    plain = tmp_path / "plain.onnx"  # a valid ONNX model made elsewhere: no rtseg metadata
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    vi = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1]) for n in ("x", "y")]
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([node], "g", vi[:1], vi[1:])), str(plain))
    with pytest.raises(RtsegError, match="without rtseg metadata"):
        read_onnx_meta(plain)


def test_export_rejects_bad_options(tmp_path, net):
    with pytest.raises(RtsegError, match="must end in .onnx"):
        export_onnx(net, META, tmp_path / "m.plan")
    with pytest.raises(RtsegError, match="at least 32x32"):
        export_onnx(net, META, tmp_path / "m.onnx", size=(16, 480))


def test_fp16_export_agrees_with_fp32(tmp_path, net, street_frame):
    size = (360, 480)
    fp32 = export_onnx(net, META, tmp_path / "fp32.onnx", size=size)
    fp16 = export_onnx(net, META, tmp_path / "fp16.onnx", size=size, fp16=True)
    model = onnx.load(str(fp16))
    dtypes = Counter(t.data_type for t in model.graph.initializer)
    assert dtypes[onnx.TensorProto.FLOAT16] > 40 and dtypes[onnx.TensorProto.FLOAT] == 0  # fp16 network inside
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8  # uint8 in, uint8 out
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    frames = _frames(street_frame, size, 2)  # the static files take batch 1: one frame per call
    agree = float(np.mean([(_run(fp16, f[None]) == _run(fp32, f[None])).mean() for f in frames]))
    assert agree >= 0.99
    recorded = read_onnx_meta(fp16).extra["export"]
    assert recorded["precision"] == "fp16" and recorded["fp16_agreement"] >= 0.99
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from rtseg.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=1200)  # generous: CI machines are busy


def test_cli_export_onnx(tmp_path, tiny_checkpoint):
    out = tmp_path / "m.onnx"
    proc = _cli("export", "--weights", str(tiny_checkpoint), "--size", "128x160", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert read_onnx_meta(out).input_size == (128, 160)
    # --engine names the weights as in run, eval and bench
    proc = _cli("export", "--engine", str(tiny_checkpoint), "--size", "96x128", "--output", str(tmp_path / "e.onnx"))
    assert proc.returncode == 0, proc.stderr
    assert read_onnx_meta(tmp_path / "e.onnx").input_size == (96, 128)
    proc = _cli("export", "--weights", str(tiny_checkpoint), "--format", "tflite", "--output", str(out))
    assert proc.returncode == 2 and "--format must be onnx or engine" in proc.stderr
    proc = _cli("export", "--weights", str(tiny_checkpoint), "--format", "engine", "--dynamic")
    assert proc.returncode == 2 and "--dynamic applies to --format onnx" in proc.stderr
