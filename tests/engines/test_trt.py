"""The TensorRT engine.

Marked ``gpu`` (skipped without TensorRT and an NVIDIA GPU, i.e. everywhere this project's CI
has run so far): build real plans and run them. On the CPU: the one-line errors, and the
engine's host logic (sidecar, tensors by name, buffers, chunking by the plan's batch, resizing,
``last_infer_ms``) against a *stand-in* for tensorrt and CUDA that executes the plan's ONNX in
ONNX Runtime. The stand-in checks rtseg's code, not TensorRT's API: only the gpu tests do that.
"""
from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtseg import gpu as gpu_checks
from rtseg.engines import trt_engine as E
from rtseg.errors import MissingDependency, RtsegError
from rtseg.export import tensorrt as T
from rtseg.formats import plan as P
from rtseg.formats.onnx_meta import read_onnx_meta

SIZE = (128, 256)
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def _gpu_ready() -> bool:
    return HAVE_TRT and gpu_checks.cuda_driver_status()[0] > 0


@pytest.fixture(scope="module")
def exported(trt_export) -> tuple[Path, P.PlanInfo]:
    """A TensorRT-prepared fp32 ONNX at SIZE and the sidecar info a plan of it would carry."""
    _, path = trt_export(SIZE, "fp32")
    meta = read_onnx_meta(path)
    info = P.PlanInfo(meta=meta, inputs=(P.TensorInfo("images", "uint8", (1, *SIZE, 3)),),
                      outputs=(P.TensorInfo("ids", "uint8", (1, *SIZE)),), precision="fp32", tensorrt_version="10.9.0")
    return path, info


def _write_plan(tmp_path: Path, exported, *, batch: int = 1, name: str = "m.plan") -> Path:
    onnx_path, info = exported
    plan = tmp_path / name
    plan.write_bytes(onnx_path.read_bytes())  # the stand-in's "plan" is the ONNX itself
    info = P.PlanInfo(meta=info.meta, inputs=(P.TensorInfo("images", "uint8", (batch, *SIZE, 3)),),
                      outputs=(P.TensorInfo("ids", "uint8", (batch, *SIZE)),), precision="fp32",
                      tensorrt_version="10.9.0")
    P.write_sidecar(plan, info)
    return plan


# ---- one-line errors --------------------------------------------------------------------------

def test_missing_plan_and_wrong_suffix(tmp_path):
    with pytest.raises(RtsegError, match="not found"):
        E.TensorRTEngine(tmp_path / "nope.plan")
    with pytest.raises(RtsegError, match="ends in .plan or .engine"):
        E.TensorRTEngine(tmp_path / "nope.onnx")


def test_missing_sidecar_is_named(tmp_path):
    (tmp_path / "m.engine").write_bytes(b"\0plan")
    with pytest.raises(RtsegError, match=r"m\.json is missing"):
        E.TensorRTEngine(tmp_path / "m.engine")


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_without_tensorrt_names_it(tmp_path, exported):
    plan = _write_plan(tmp_path, exported)
    with pytest.raises(MissingDependency, match="tensorrt") as err:
        E.TensorRTEngine(plan)
    assert "rtseg[trt]" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, needle", [
    ({"device": "tpu"}, "runs only on an NVIDIA GPU"),
    ({"size": (256, 512)}, "built for 128x256 and cannot run at 256x512"),
])
@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
def test_device_and_size_are_checked(tmp_path, exported, kwargs, needle):
    plan = _write_plan(tmp_path, exported)
    with pytest.raises(RtsegError, match=needle):
        E.TensorRTEngine(plan, **kwargs)


def test_parse_cuda_device():
    assert [E.parse_cuda_device(d) for d in ("cuda", "GPU", "auto", None, "cuda:1")] == [0, 0, 0, 0, 1]
    assert E.parse_cuda_device("cpu") == 0  # the CLI's default device: a plan still runs on the GPU
    with pytest.raises(RtsegError):
        E.parse_cuda_device("cuda:x")


def test_open_engine_routes_plans_here(tmp_path):
    from rtseg import engines

    (tmp_path / "m.plan").write_bytes(b"\0plan")
    with pytest.raises(RtsegError, match=r"m\.json is missing"):
        engines.open_engine(tmp_path / "m.plan", device="cuda")


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_cli_run_with_a_plan_without_tensorrt_exits_2(tmp_path, exported):
    from typer.main import get_command

    from rtseg.cli import app

    if "run" not in get_command(app).commands:
        pytest.skip("rtseg run is not there yet")
    plan = _write_plan(tmp_path, exported)
    frame = tmp_path / "f.png"
    cv2.imwrite(str(frame), np.zeros((64, 64, 3), np.uint8))
    proc = subprocess.run([sys.executable, "-m", "rtseg.cli", "run", str(frame), "--engine", str(plan),
                           "--no-show", "--output", str(tmp_path / "out.png")],
                          capture_output=True, text=True, timeout=600)  # generous: CI machines can be busy
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "tensorrt" in lines[0] and "Traceback" not in proc.stderr
    assert "pip install 'rtseg[trt]'" in lines[0]  # printed as text, not eaten as Rich markup


# ---- host logic against a stand-in for tensorrt + CUDA ---------------------------------------

class _FakeBuffer:
    def __init__(self, shape):
        self.dev = np.zeros(shape, np.uint8)  # "device" memory, addressed by its pointer
        self.host = np.zeros(shape, np.uint8)
        self.ptr = self.dev.ctypes.data

    def to_device(self, n):
        self.dev[:n] = self.host[:n]

    def to_host(self, n):
        self.host[:n] = self.dev[:n]


class _FakeEvent:
    def record(self):
        pass

    def synchronize(self):
        pass

    def ms_until(self, later):
        return 1.5


class _FakeCuda:
    name, stream_handle = "fake", 7

    def __init__(self):
        self.memory: dict[int, np.ndarray] = {}
        self.closed = False

    def activate(self):
        return contextlib.nullcontext()

    def buffer(self, shape):
        buf = _FakeBuffer(shape)
        self.memory[buf.ptr] = buf.dev
        return buf

    def event(self):
        return _FakeEvent()

    def close(self):
        self.closed = True


def _fake_trt(cuda: _FakeCuda, batch: int) -> types.ModuleType:
    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0"
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dtype: np.uint8
    trt.log = []

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Context:
        def __init__(self, sess):
            self.sess, self.addr = sess, {}

        def set_input_shape(self, name, shape):
            trt.log.append(("shape", name, tuple(shape)))

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            assert stream == cuda.stream_handle
            images, ids = cuda.memory[self.addr["images"]], cuda.memory[self.addr["ids"]]
            for i in range(len(images)):  # the ONNX has batch 1; the stand-in plan may have more
                ids[i] = self.sess.run(None, {"images": images[i:i + 1]})[0][0]
            trt.log.append(("execute",))
            return True

    class CudaEngine:
        num_io_tensors = 2

        def __init__(self, sess):
            self.sess = sess

        def get_tensor_name(self, i):
            return ["images", "ids"][i]

        def get_tensor_mode(self, name):
            return "in" if name == "images" else "out"

        def get_tensor_shape(self, name):
            return (batch, *SIZE, 3) if name == "images" else (batch, *SIZE)

        def get_tensor_dtype(self, name):
            return "uint8"

        def create_execution_context(self):
            return Context(self.sess)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            try:
                return CudaEngine(ort.InferenceSession(data, providers=["CPUExecutionProvider"]))
            except Exception:  # onnxruntime raises its own exception types for bad bytes
                return None

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


@pytest.fixture
def stand_in(monkeypatch):
    def install(batch: int) -> tuple[_FakeCuda, types.ModuleType]:
        cuda = _FakeCuda()
        trt = _fake_trt(cuda, batch)
        monkeypatch.setattr(E, "require_tensorrt", lambda feature: trt)
        monkeypatch.setattr(E, "require_cuda_gpu", lambda feature: 1)
        monkeypatch.setattr(E, "open_cuda", lambda index: cuda)
        return cuda, trt
    return install


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
@pytest.mark.parametrize("batch", [1, 2])
def test_host_logic_with_stand_in(tmp_path, exported, stand_in, street_frame, batch):
    cuda, trt = stand_in(batch)
    plan = _write_plan(tmp_path, exported, batch=batch)
    engine = E.TensorRTEngine(plan, device="cuda:0")
    assert (engine.name, engine.device, engine.input_size) == ("tensorrt", "cuda:0", SIZE)
    assert engine.meta == exported[1].meta and np.isnan(engine.last_infer_ms)

    frames = [street_frame, cv2.flip(street_frame, 1), street_frame[:600, :900].copy()]  # 3 frames, 2 sizes
    got = engine.predict_batch(frames)
    executes = sum(1 for entry in trt.log if entry == ("execute",))
    assert executes == -(-len(frames) // batch)  # one execute per chunk of the plan's batch
    assert engine.last_infer_ms == pytest.approx(1.5 * executes)  # summed over the chunks of this call

    import onnxruntime as ort

    sess = ort.InferenceSession(str(exported[0]), providers=["CPUExecutionProvider"])
    for frame, ids in zip(frames, got):
        small = cv2.resize(frame, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR)
        want = sess.run(None, {"images": small[None]})[0][0]
        want = cv2.resize(want, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
        assert ids.shape == frame.shape[:2] and ids.dtype == np.uint8
        np.testing.assert_array_equal(ids, want)
    engine.close()
    assert cuda.closed


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
def test_bad_plan_bytes_and_foreign_sidecar(tmp_path, exported, stand_in):
    stand_in(1)
    plan = _write_plan(tmp_path, exported)
    plan.write_bytes(b"not a plan")
    with pytest.raises(RtsegError, match="could not load .*built with TensorRT 10.9.0"):
        E.TensorRTEngine(plan)
    plan = _write_plan(tmp_path, exported, name="n.plan")
    info = P.read_sidecar(plan)
    P.write_sidecar(plan, P.PlanInfo(meta=info.meta, inputs=(P.TensorInfo("input", "uint8", (1, *SIZE, 3)),),
                                     outputs=info.outputs, precision="fp32", tensorrt_version="10.9.0"))
    with pytest.raises(RtsegError, match="disagree on the tensor names"):
        E.TensorRTEngine(plan)


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
def test_infer_rejects_wrong_batches(tmp_path, exported, stand_in):
    stand_in(1)
    engine = E.TensorRTEngine(_write_plan(tmp_path, exported))
    with pytest.raises(RtsegError, match="infer expects uint8"):
        engine.infer(np.zeros((1, 64, 64, 3), np.uint8))


# ---- real TensorRT on a real GPU ----------------------------------------------------------------

gpu = pytest.mark.skipif(not _gpu_ready(), reason="needs TensorRT and an NVIDIA GPU (pip install 'rtseg[trt]')")


@pytest.mark.gpu
@pytest.mark.slow
@gpu
@pytest.mark.parametrize("fp16", [False, True])
def test_gpu_build_and_run_plan(tiny_checkpoint, tmp_path, street_frame, fp16):
    """Build a real plan, run it, and compare with ONNX Runtime on the CPU."""
    import onnxruntime as ort

    from rtseg.engines.trt_engine import TensorRTEngine

    size = (256, 512)
    plan = T.export_engine(tiny_checkpoint, tmp_path / "m.plan", size=size, fp16=fp16, workspace_gb=1)
    info = P.read_sidecar(plan)
    assert info.input_size == size and info.precision == ("fp16" if fp16 else "fp32")
    engine = TensorRTEngine(plan, device="cuda")
    ids = engine.predict(street_frame)
    assert ids.shape == street_frame.shape[:2] and ids.dtype == np.uint8
    assert np.isfinite(engine.last_infer_ms) and engine.last_infer_ms > 0

    from rtseg.formats.checkpoint import build_from_checkpoint
    from rtseg.export.onnx import export_onnx

    model, meta = build_from_checkpoint(tiny_checkpoint)
    ref = export_onnx(model, meta, tmp_path / "ref.onnx", size=size, dynamic=False)
    small = cv2.resize(street_frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)[None]
    want = ort.InferenceSession(str(ref), providers=["CPUExecutionProvider"]).run(None, {"images": small})[0]
    got = engine.infer(small)
    assert (got == want).mean() >= 0.98  # TF32/fp16 kernels flip a few near-ties of untrained logits

    batch = engine.predict_batch([street_frame, street_frame])
    np.testing.assert_array_equal(batch[0], batch[1])
    np.testing.assert_array_equal(batch[0], ids)
    engine.close()
