"""PyTorch and ONNX Runtime engines: chosen by suffix, predict at the frame's size, and the
same class ids on real frames (>= 99.9% of pixels, fp32)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from onnx_exports import export_weights
from rtseg import load_engine
from rtseg.errors import RtsegError

PARITY = 0.999


@pytest.fixture(scope="module")
def dynamic_onnx(weights, tmp_path_factory) -> Path:
    return export_weights(weights, tmp_path_factory.mktemp("onnx") / "dyn.onnx", dynamic=True)


@pytest.fixture(scope="module")
def fixed_onnx(weights, tmp_path_factory) -> Path:
    return export_weights(weights, tmp_path_factory.mktemp("onnx") / "fixed.onnx", size=(128, 160))


def test_suffix_picks_the_backend(weights, dynamic_onnx, tmp_path):
    assert load_engine(weights).name == "pytorch"
    pth = shutil.copy(weights, tmp_path / "w.pth")
    assert load_engine(pth).name == "pytorch"
    ort = load_engine(dynamic_onnx, runtime="onnxruntime")
    assert (ort.name, ort.device) == ("onnxruntime", "cpu")
    assert ort.meta == load_engine(weights).meta.__class__.from_dict(ort.meta.to_dict())


def test_unknown_suffix_and_missing_file(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"x")
    with pytest.raises(RtsegError, match=r"'\.tflite'.*\.pt/\.pth.*\.onnx.*\.plan/\.engine") as info:
        load_engine(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(RtsegError, match="engine file not found"):
        load_engine(tmp_path / "missing.onnx")


def test_bad_options(weights, dynamic_onnx):
    with pytest.raises(RtsegError, match="--runtime pytorch needs the .pt checkpoint"):
        load_engine(dynamic_onnx, runtime="pytorch")
    with pytest.raises(RtsegError, match="--runtime 'tvm' is not allowed"):
        load_engine(dynamic_onnx, runtime="tvm")
    with pytest.raises(RtsegError, match="unknown device 'tpu'"):
        load_engine(weights, device="tpu")
    with pytest.raises(RtsegError, match="size must be HxW"):
        load_engine(weights, size="big")
    with pytest.raises(RtsegError, match="--threads must be >= 0"):
        load_engine(dynamic_onnx, threads=-1)


def test_threads_reach_the_runtime(weights, dynamic_onnx):
    ort = load_engine(dynamic_onnx, runtime="onnxruntime", threads=1)
    assert ort.session.get_session_options().intra_op_num_threads == 1
    before = torch.get_num_threads()
    try:
        load_engine(weights, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_one_line_error(weights, dynamic_onnx):
    for path in (weights, dynamic_onnx):
        with pytest.raises(RtsegError, match="CUDA") as info:
            load_engine(path, device="cuda", runtime="onnxruntime" if path.suffix == ".onnx" else None)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["pt", "onnx"])
def test_predict_shapes_and_dtypes(kind, weights, dynamic_onnx, street_frame):
    engine = load_engine(weights if kind == "pt" else dynamic_onnx, size=(96, 160),
                         runtime="onnxruntime" if kind == "onnx" else None)
    assert engine.input_size == (96, 160)
    small = street_frame[100:457, 300:777]  # 357x477: any frame size
    ids = engine.predict(small)
    assert ids.shape == small.shape[:2] and ids.dtype == np.uint8 and ids.max() < engine.meta.num_classes
    batch = engine.predict_batch([street_frame, small])
    assert [b.shape for b in batch] == [street_frame.shape[:2], small.shape[:2]]
    np.testing.assert_array_equal(batch[1], ids)  # batching does not change the answer
    with pytest.raises(RtsegError, match="HxWx3 uint8"):
        engine.predict(small.astype(np.float32))


def test_fixed_size_onnx_resizes_to_its_own_size(fixed_onnx, street_frame, caplog):
    with caplog.at_level(logging.WARNING):
        engine = load_engine(fixed_onnx, size=(256, 320), runtime="onnxruntime")
    assert engine.input_size == (128, 160)
    assert "exported at 128x160" in caplog.text
    assert engine.predict(street_frame).shape == street_frame.shape[:2]
    assert len(engine.predict_batch([street_frame] * 3)) == 3  # a batch-1 file runs a batch in chunks


def _parity(a, b, frames) -> float:
    return float(np.mean([(x == y).mean() for x, y in zip(a.predict_batch(frames), b.predict_batch(frames))]))


def test_pytorch_and_onnxruntime_agree_on_the_street_frame(weights, dynamic_onnx, street_frame):
    torch_engine = load_engine(weights, size=(512, 1024))
    ort_engine = load_engine(dynamic_onnx, size=(512, 1024), runtime="onnxruntime")
    assert _parity(torch_engine, ort_engine, [street_frame]) >= PARITY


def test_pytorch_and_onnxruntime_agree_on_camvid_frames(weights, dynamic_onnx, camvid_root):
    files = sorted((camvid_root / "val").glob("*.png"))[::25][:4]
    frames = [cv2.imread(str(f)) for f in files]
    assert frames and all(f is not None for f in frames)
    torch_engine = load_engine(weights, size=(360, 480))
    ort_engine = load_engine(dynamic_onnx, size=(360, 480), runtime="onnxruntime")
    assert _parity(torch_engine, ort_engine, frames) >= PARITY


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_agrees_with_cpu_fp32(weights, street_frame):
    cpu = load_engine(weights, size=(512, 1024), device="cpu")
    gpu = load_engine(weights, size=(512, 1024), device="cuda")
    assert gpu.device.startswith("cuda") and gpu.fp16
    assert _parity(cpu, gpu, [street_frame, street_frame[:, ::-1].copy()]) >= 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replays_what_eager_computes(weights, street_frame):
    """The forward captured as a CUDA graph (the default on CUDA) gives the eager path's ids, frame
    after frame (the static buffers take each new frame), and each batch shape gets its own graph."""
    graph = load_engine(weights, size=(512, 1024), device="cuda")
    eager = load_engine(weights, size=(512, 1024), device="cuda", cuda_graphs=False)
    frames = [street_frame, street_frame[:, ::-1].copy(), street_frame[::-1].copy()]
    for frame in frames:
        batch = graph.preprocess([frame])
        assert (graph.infer(batch) == eager.infer(batch)).mean() >= 0.999
    two = np.concatenate([graph.preprocess([f]) for f in frames[:2]])
    assert (graph.infer(two) == eager.infer(two)).mean() >= 0.999
    assert len(graph._buffers) == 2 and all(b.graph is not None for b in graph._buffers.values())
    assert all(b.graph is None for b in eager._buffers.values())

