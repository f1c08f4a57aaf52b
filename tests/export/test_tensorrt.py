"""TensorRT export, tested on the CPU as far as a CPU can go.

What runs here: the ONNX graph TensorRT will parse (operators, opset, static shapes, the uint8
boundary rule), fp16 parity in ONNX Runtime, the metadata sidecar, the one-line errors, and the
builder's version/precision branching against a *stand-in* for the tensorrt module (that checks
rtseg's own logic, not TensorRT). What needs a GPU (building and running a real plan) is in
tests/engines/test_trt.py, marked ``gpu``.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from rtseg import gpu as gpu_checks
from rtseg.errors import MissingDependency, RtsegError
from rtseg.export import tensorrt as T
from rtseg.export import trt_graph as G
from rtseg.formats import plan as P
from rtseg.meta import ModelMeta

SIZE = (128, 256)  # small static export size: the graph is the same at any size
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def onnx_pair(trt_export) -> dict[str, Path]:
    """fp32 and fp16 ONNX exports of the untrained checkpoint, raw and TensorRT-prepared."""
    paths = {}
    for precision in ("fp32", "fp16"):
        paths[precision], paths[precision + "_prepared"] = trt_export(SIZE, precision)
    return paths


def _ort_ids(path: Path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: batch})[0]


@pytest.fixture(scope="module")
def street_batch(street_frame: np.ndarray) -> np.ndarray:
    return cv2.resize(street_frame, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA)[None]


# ---- the graph TensorRT parses --------------------------------------------------------------

@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_exported_graph_is_one_tensorrt_parses(onnx_pair, precision):
    model = onnx.load(str(onnx_pair[precision + "_prepared"]))
    assert G.check_onnx_for_tensorrt(model, size=SIZE) == []
    ops = {n.op_type for n in model.graph.node}
    assert ops <= G.TRT_ONNX_OPS and {"Conv", "ArgMax", "Cast"} <= ops
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert G.TRT_OPSET_RANGE[0] <= opset <= G.TRT_OPSET_RANGE[1]
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, *SIZE, 3]
    assert out.type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, *SIZE]
    # uint8 only at the boundary, through Casts (TensorRT: UINT8 only as network I/O)
    assert {n.op_type for n in model.graph.node if inp.name in n.input} == {"Cast"}
    assert [n.op_type for n in model.graph.node if out.name in n.output] == ["Cast"]


def test_checker_is_not_vacuous():
    """A graph with each kind of problem is reported, problem by problem."""
    nodes = [
        helper.make_node("Transpose", ["images"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["t"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Det", ["f"], ["d"]),  # not in TensorRT's matrix
        helper.make_node("Resize", ["f", "", "", "sz"], ["r"], mode="cubic"),
        helper.make_node("ArgMax", ["r"], ["ids"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "bad",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 64, 64, 3])],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 64, 64])],
        [helper.make_tensor("sz", TensorProto.INT64, [4], [1, 3, 64, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    problems = " | ".join(G.check_onnx_for_tensorrt(model, size=(64, 64)))
    for needle in ("opset 22", "operator Det", "Resize mode=cubic", "output ids must be uint8",
                   "shapes must be static", "feeds Transpose", "comes from ArgMax"):
        assert needle in problems


def test_checker_wants_symmetric_int8_qdq():
    """TensorRT's Q/DQ rule: int8 with zero point 0. ONNX Runtime's default (uint8 activations
    with a zero point, as CPU quantisers such as benchmarks/int8_quantize.py write) is reported."""
    def graph_with(zero_point):
        inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), zero_point]
        nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
                 helper.make_node("QuantizeLinear", ["f", "s", "zp"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"]),
                 helper.make_node("Cast", ["d"], ["ids"], to=TensorProto.UINT8)]
        g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 8, 8, 3])],
                              [helper.make_tensor_value_info("ids", TensorProto.UINT8, [1, 8, 8])], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    ok = graph_with(helper.make_tensor("zp", TensorProto.INT8, [], [0]))
    assert [p for p in G.check_onnx_for_tensorrt(ok) if "Q/DQ" in p] == []
    for bad in (helper.make_tensor("zp", TensorProto.UINT8, [], [128]), helper.make_tensor("zp", TensorProto.INT8, [], [3])):
        assert any("symmetric int8 Q/DQ" in p for p in G.check_onnx_for_tensorrt(graph_with(bad)))


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
def test_prepare_moves_the_cast_first_and_keeps_the_ids(onnx_pair, street_batch):
    raw, prepared = onnx.load(str(onnx_pair["fp32"])), onnx.load(str(onnx_pair["fp32_prepared"]))
    name = raw.graph.input[0].name
    assert [n.op_type for n in prepared.graph.node if name in n.input] == ["Cast"]
    np.testing.assert_array_equal(_ort_ids(onnx_pair["fp32"], street_batch),
                                  _ort_ids(onnx_pair["fp32_prepared"], street_batch))


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
def test_fp16_graph_agrees_with_fp32(onnx_pair, street_batch):
    """The fp16 ONNX is the graph an fp16 plan is built from (strongly typed): its class ids must
    agree with fp32 on a real street frame (untrained weights: near-ties make this a hard case)."""
    ids32 = _ort_ids(onnx_pair["fp32_prepared"], street_batch)
    ids16 = _ort_ids(onnx_pair["fp16_prepared"], street_batch)
    assert ids16.shape == ids32.shape == (1, *SIZE) and ids16.dtype == np.uint8
    assert len(np.unique(ids32)) > 1  # not a constant map, which would agree trivially
    assert (ids16 == ids32).mean() >= 0.99
    fp16_weights = [i for i in onnx.load(str(onnx_pair["fp16_prepared"])).graph.initializer
                    if i.data_type == TensorProto.FLOAT16]
    assert len(fp16_weights) > 10  # really an fp16 graph


# ---- the sidecar ----------------------------------------------------------------------------

def _plan_info(precision: str = "fp16") -> P.PlanInfo:
    meta = ModelMeta.for_dataset("camvid", input_size=SIZE, extra={"miou": 0.5})
    return P.PlanInfo(meta=meta, inputs=(P.TensorInfo("images", "uint8", (1, *SIZE, 3)),),
                      outputs=(P.TensorInfo("ids", "uint8", (1, *SIZE)),), precision=precision,
                      tensorrt_version="10.9.0")


def test_sidecar_round_trip(tmp_path):
    plan = tmp_path / "fastscnn.plan"
    info = _plan_info()
    path = P.write_sidecar(plan, info)
    assert path == tmp_path / "fastscnn.json"
    back = P.read_sidecar(plan)
    assert back == info and back.meta == info.meta and back.input_size == SIZE


@pytest.mark.parametrize("content, needle", [
    (None, "is missing"),
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "something-else"}), "not an rtseg TensorRT sidecar"),
    (json.dumps({"format": P.SIDECAR_FORMAT, "meta": {}}), "malformed"),
])
def test_sidecar_errors_are_one_line(tmp_path, content, needle):
    plan = tmp_path / "m.plan"
    if content is not None:
        (tmp_path / "m.json").write_text(content)
    with pytest.raises(RtsegError, match=needle) as err:
        P.read_sidecar(plan)
    assert "\n" not in str(err.value)


# ---- clear errors, checked before anything slow ---------------------------------------------

def _no_onnx_step(monkeypatch):
    """Make the slow steps fail loudly: the environment checks must come before them."""
    import rtseg.formats.checkpoint

    def forbidden(*a, **k):
        raise AssertionError("the checkpoint/ONNX step ran before the TensorRT/GPU checks")

    monkeypatch.setattr(rtseg.formats.checkpoint, "build_from_checkpoint", forbidden)


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_export_without_tensorrt_names_it(tiny_checkpoint, tmp_path, monkeypatch):
    _no_onnx_step(monkeypatch)
    with pytest.raises(MissingDependency, match="tensorrt") as err:
        T.export_engine(tiny_checkpoint, tmp_path / "m.plan", size=SIZE, fp16=True)
    assert "rtseg[trt]" in str(err.value) and "\n" not in str(err.value)


def _fake_trt(version: str) -> types.ModuleType:
    """Stand-in for the tensorrt module: records what rtseg asks of the builder."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: list[tuple] = []
    trt.calls = calls

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape, self.dtype = name, shape, "uint8"

    class Network:
        num_inputs = num_outputs = 1

        def get_input(self, i):
            return Tensor("images", (1, *SIZE, 3))

        def get_output(self, i):
            return Tensor("ids", (1, *SIZE))

    class Config:
        int8_calibrator = None

        def set_memory_pool_limit(self, pool, size):
            calls.append(("workspace", pool, size))

        def set_flag(self, flag):
            calls.append(("flag", flag))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            calls.append(("build",))
            calib = config.int8_calibrator
            while calib is not None:  # what TensorRT 10 does with a calibrator: pull batches until None
                ptrs = calib.get_batch(["images"])
                if ptrs is None:
                    break
                calls.append(("calib_batch", calib.get_batch_size(), ptrs))
            return b"PLAN"

    class OnnxParser:
        errors: list[str] = []

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parse", Path(path).name))
            return not self.errors

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    class IInt8EntropyCalibrator2:
        def __init__(self):
            calls.append(("calibrator_base_init",))

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.nptype = lambda dtype: np.uint8
    return trt


def test_export_with_tensorrt_but_no_gpu_says_so(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt("10.9.0"))
    monkeypatch.setattr(gpu_checks, "cuda_driver_status", lambda: (0, "no NVIDIA driver found (libcuda is not loadable)"))
    _no_onnx_step(monkeypatch)
    with pytest.raises(RtsegError, match="needs an NVIDIA GPU: no NVIDIA driver found"):
        T.export_engine(tiny_checkpoint, tmp_path / "m.plan", size=SIZE)


def test_int8_on_tensorrt_11_is_refused_in_one_line(tiny_checkpoint, tmp_path, monkeypatch):
    (tmp_path / "calib").mkdir()
    cv2.imwrite(str(tmp_path / "calib" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt("11.1.0"))
    monkeypatch.setattr(gpu_checks, "cuda_driver_status", lambda: (1, ""))
    _no_onnx_step(monkeypatch)
    with pytest.raises(RtsegError, match="--int8 on TensorRT 11.1.0 needs a symmetric int8 Q/DQ") as err:
        T.export_engine(tiny_checkpoint, tmp_path / "m.plan", size=SIZE, int8=True, calib=tmp_path / "calib")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, needle", [
    ({"output": "m.onnx"}, "must end in .plan or .engine"),
    ({"workspace_gb": 0}, "--workspace"),
    ({"int8": True}, "--int8 needs --calib"),
])
def test_bad_options_are_one_line_errors(tiny_checkpoint, tmp_path, monkeypatch, kwargs, needle):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt("10.9.0"))
    monkeypatch.setattr(gpu_checks, "cuda_driver_status", lambda: (1, ""))
    _no_onnx_step(monkeypatch)
    args = {"output": "m.plan", "size": SIZE, **kwargs}
    output = tmp_path / args.pop("output")
    with pytest.raises(RtsegError, match=needle):
        T.export_engine(tiny_checkpoint, output, **args)


# ---- builder branching, against the stand-in -------------------------------------------------

@pytest.mark.parametrize("version, precision, network_flags, builder_flags", [
    ("10.9.0", "fp32", 0, []),
    ("10.9.0", "fp16", 1, []),  # strongly typed: precision comes from the fp16 ONNX, not a flag
    ("11.1.0", "fp32", 0, []),  # 11: always strongly typed, the flag is deprecated
    ("11.1.0", "fp16", 0, []),
])
@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
def test_build_plan_flags_per_version(onnx_pair, version, precision, network_flags, builder_flags):
    trt = _fake_trt(version)
    plan, inputs, outputs = T.build_plan(trt, onnx_pair[precision + "_prepared"], precision=precision, workspace_gb=2)
    assert plan == b"PLAN"
    assert inputs == (P.TensorInfo("images", "uint8", (1, *SIZE, 3)),)
    assert outputs == (P.TensorInfo("ids", "uint8", (1, *SIZE)),)
    assert ("network", network_flags) in trt.calls
    assert ("workspace", "WORKSPACE", 2 << 30) in trt.calls
    assert [c[1] for c in trt.calls if c[0] == "flag"] == builder_flags


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
@pytest.mark.parametrize("version", ["10.9.0", "11.1.0"])
def test_export_engine_end_to_end_with_stand_in(onnx_pair, tiny_checkpoint, tmp_path, monkeypatch, version):
    """export_engine's own orchestration (ONNX -> prepared graph -> build -> plan + sidecar), with
    the cached fp16 export standing in for the exporter and the stand-in for TensorRT."""
    import shutil

    import rtseg.export.onnx

    trt = _fake_trt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(gpu_checks, "cuda_driver_status", lambda: (1, ""))
    seen = {}

    def fake_export(model, meta, output, *, size, fp16, dynamic, scores):
        seen.update(size=size, fp16=fp16, dynamic=dynamic, scores=scores)
        shutil.copy(onnx_pair["fp16"], output)  # the raw export: export_engine must prepare it itself
        return Path(output)

    monkeypatch.setattr(rtseg.export.onnx, "export_onnx", fake_export)
    plan = T.export_engine(tiny_checkpoint, tmp_path / "out" / "fastscnn.plan", size=SIZE, fp16=True, workspace_gb=1.5)
    assert seen == {"size": SIZE, "fp16": True, "dynamic": False, "scores": False}  # a plan has no scores output
    assert plan.read_bytes() == b"PLAN"
    info = P.read_sidecar(plan)
    assert info.precision == "fp16" and info.tensorrt_version == version and info.input_size == SIZE
    assert info.meta.input_size == SIZE and info.meta.num_classes == 11
    assert info.meta.extra["export"]["format"] == "tensorrt"
    assert ("parse", "model.onnx") in trt.calls and ("workspace", "WORKSPACE", int(1.5 * (1 << 30))) in trt.calls


class _HostCuda:
    """Stand-in for the engine's CUDA backend: "device" memory is host memory."""

    def __init__(self):
        self.uploaded, self.closed = [], False

    def activate(self):
        import contextlib

        return contextlib.nullcontext()

    def buffer(self, shape):
        cuda = self

        class Buffer:
            host = np.zeros(shape, np.uint8)
            ptr = 1234

            def to_device(self, n):
                cuda.uploaded.append(self.host[:n].copy())

        return Buffer()

    def synchronize(self):
        pass

    def close(self):
        self.closed = True


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
def test_int8_on_tensorrt_10_calibrates_on_the_images(onnx_pair, tmp_path, monkeypatch):
    import rtseg.gpu.cuda

    cuda = _HostCuda()
    monkeypatch.setattr(rtseg.gpu.cuda, "open_cuda", lambda index: cuda)
    for i in range(3):  # 3 images of another size: resized to the network's input, BGR kept
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), (10 * i, 100, 200), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    files = T._calibration_images(tmp_path)
    assert [f.name for f in files] == ["0.png", "1.png", "2.png"]
    trt = _fake_trt("10.9.0")
    T.build_plan(trt, onnx_pair["fp32_prepared"], precision="int8", workspace_gb=1, calib_files=files)
    assert [c[1] for c in trt.calls if c[0] == "flag"] == ["INT8", "FP16"]
    assert ("calibrator_base_init",) in trt.calls
    assert [c[1:] for c in trt.calls if c[0] == "calib_batch"] == [(1, [1234])] * 3
    assert [u.shape for u in cuda.uploaded] == [(1, *SIZE, 3)] * 3
    assert [tuple(u[0, 0, 0]) for u in cuda.uploaded] == [(0, 100, 200), (10, 100, 200), (20, 100, 200)]
    assert cuda.closed


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
def test_parser_errors_become_one_line(onnx_pair):
    trt = _fake_trt("10.9.0")
    trt.OnnxParser.errors = ["In node 3 (Det): UNSUPPORTED_NODE", "second\nproblem"]
    with pytest.raises(RtsegError, match="parser rejected the graph: In node 3 .*; second problem") as err:
        T.build_plan(trt, onnx_pair["fp32_prepared"], precision="fp32", workspace_gb=1)
    assert "\n" not in str(err.value)


# ---- the command line -----------------------------------------------------------------------

def _has_command(name: str) -> bool:
    from typer.main import get_command

    from rtseg.cli import app

    return name in get_command(app).commands


@pytest.mark.slow  # exports the network to ONNX (module fixture) or runs a subprocess
@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_cli_export_engine_without_tensorrt_exits_2(tiny_checkpoint, tmp_path):
    if not _has_command("export"):
        pytest.skip("rtseg export is not registered yet")
    proc = subprocess.run([sys.executable, "-m", "rtseg.cli", "export", "--weights", str(tiny_checkpoint),
                           "--format", "engine", "--size", "128x256", "--output", str(tmp_path / "m.plan")],
                          capture_output=True, text=True, timeout=600)  # generous: CI machines can be busy
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "tensorrt" in lines[0] and "Traceback" not in proc.stderr
    assert "pip install 'rtseg[trt]'" in lines[0]  # printed as text, not eaten as Rich markup
    assert not (tmp_path / "m.plan").exists()


def test_the_exporter_and_the_engine_do_not_import_each_other():
    import subprocess
    import sys

    code = ("import sys, rtseg.export.tensorrt, rtseg.gpu.cuda; "
            "print(any(m.startswith('rtseg.engines') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
