"""Every registered network through the export paths: ONNX at 1024x2048, 720x1280, 512x1024,
360x480 and dynamic, agreeing with PyTorch fp32 in ONNX Runtime on >= 99.9% of pixels of a real
frame; OpenVINO running each; the graph TensorRT parses (operators, opset, static shapes, the
uint8 boundary) and fp16 agreement.

The networks are untrained, but their BatchNorm statistics are taken from real street frames
first: with the initial statistics an untrained network tends to predict one class everywhere,
and agreement on a one-class map would prove nothing. Each test also checks that several classes
appear.
"""
from __future__ import annotations

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import rtseg
from rtseg.export import trt_graph as G
from rtseg.export.onnx import export_onnx
from rtseg.formats.onnx_meta import read_onnx_meta
from rtseg.meta import ModelMeta
from rtseg.nets.deploy import DeployModel

NETWORKS = rtseg.list_models()
PARITY = 0.999  # ONNX Runtime vs PyTorch fp32: only summation order differs


def _frame(street_frame: np.ndarray, size: tuple[int, int], flip: bool = False) -> np.ndarray:
    h, w = size
    frame = cv2.resize(street_frame, (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame[:, ::-1]) if flip else frame


@pytest.fixture(scope="module", params=NETWORKS)
def deployed(request, street_frame) -> tuple[torch.nn.Module, ModelMeta, DeployModel]:
    """(network, metadata, DeployModel) for each registered network, BatchNorm statistics taken
    from crops of the real street frame (cumulative average over a few forward passes)."""
    torch.manual_seed(0)
    name = request.param
    # U-Net at width 16 (32 by default): the same operators and graph, a quarter of the FLOPs; at
    # width 32 its four tests took 110 s of the suite's ~13 minutes.
    args = {"width": 16} if name == "unet" else {}
    net = rtseg.create_model(name, num_classes=11, **args)
    meta = ModelMeta.for_dataset("camvid", model=name, model_args=args, input_size=(360, 480))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    norm = DeployModel(net, meta)
    net.train()
    with torch.no_grad():
        for i, (y, x) in enumerate([(0, 0), (256, 512), (512, 1024), (128, 1536)]):
            crop = np.ascontiguousarray(street_frame[y:y + 384, x:x + 512])
            crop = crop[:, ::-1].copy() if i % 2 else crop
            img = torch.from_numpy(crop[None]).permute(0, 3, 1, 2).float()
            net(torch.nn.functional.conv2d(img, norm.norm_weight, norm.norm_bias).repeat(2, 1, 1, 1))
    net.eval()
    return net, meta, DeployModel(net, meta).eval()


def _ort_ids(path, batch: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["ids"], {"images": batch})[0]


def _torch_ids(reference: DeployModel, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return reference(torch.from_numpy(batch)).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("size", [(360, 480), (512, 1024), (720, 1280), (1024, 2048)])
def test_static_onnx_matches_pytorch(tmp_path, deployed, street_frame, size):
    net, meta, reference = deployed
    path = export_onnx(net, meta, tmp_path / "m.onnx", size=size)
    onnx.checker.check_model(str(path))
    batch = _frame(street_frame, size)[None]
    got, want = _ort_ids(path, batch), _torch_ids(reference, batch)
    assert got.dtype == np.uint8 and got.shape == want.shape == (1, *size)
    assert len(np.unique(want)) >= 3  # a real segmentation, not one class everywhere
    assert (got == want).mean() >= PARITY
    assert read_onnx_meta(path).model == meta.model


@pytest.mark.slow
def test_dynamic_onnx_runs_at_any_size_and_batch(tmp_path, deployed, street_frame):
    net, meta, reference = deployed
    path = export_onnx(net, meta, tmp_path / "dyn.onnx", size=(360, 480), dynamic=True)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "height", "width", 3]
    for size, n in [((360, 480), 2), ((720, 1280), 1), ((100, 77), 3), ((512, 1024), 1)]:
        batch = np.stack([_frame(street_frame, size, flip=i % 2 == 1) for i in range(n)])
        got, want = _ort_ids(path, batch), _torch_ids(reference, batch)
        assert got.shape == want.shape == (n, *size), size
        assert (got == want).mean() >= PARITY, size


@pytest.mark.slow
def test_openvino_runs_the_export(tmp_path, deployed, street_frame):
    pytest.importorskip("openvino")
    from rtseg import load_engine

    net, meta, reference = deployed
    size = (360, 480)
    path = export_onnx(net, meta, tmp_path / "m.onnx", size=size)
    engine = load_engine(path, runtime="openvino", precision="f32")
    frame = _frame(street_frame, size)
    ids = engine.predict(frame)
    want = _torch_ids(reference, frame[None])[0]
    assert ids.shape == size and ids.dtype == np.uint8
    assert (ids == want).mean() >= 0.995  # f32: summation order only


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_graph(tmp_path, deployed, street_frame, precision):
    """The ONNX graph `rtseg export --format engine` hands TensorRT: only operators of its
    support matrix, an opset every TensorRT 10.x parses, static shapes, uint8 only at the
    boundary through Casts; preparing it changes no id; fp16 agrees with fp32."""
    net, meta, _ = deployed
    size = (128, 256)
    # as export_engine exports it: ids only (a plan has no scores output)
    raw = export_onnx(net, meta, tmp_path / f"{precision}.onnx", size=size, fp16=precision == "fp16", scores=False)
    prepared = G.prepare_onnx_for_tensorrt(onnx.load(str(raw)))
    onnx.checker.check_model(prepared)
    assert G.check_onnx_for_tensorrt(prepared, size=size) == []
    onnx.save(prepared, str(tmp_path / "prepared.onnx"))
    batch = _frame(street_frame, size)[None]
    np.testing.assert_array_equal(_ort_ids(raw, batch), _ort_ids(tmp_path / "prepared.onnx", batch))
    if precision == "fp16":
        agree = read_onnx_meta(raw).extra["export"]["fp16_agreement"]
        print(f"{meta.model} fp16 agreement {agree:.4f}")
        assert agree >= 0.95
