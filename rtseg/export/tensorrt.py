"""Export a checkpoint to a TensorRT engine (``.plan``) with the Python builder.

Steps, each a plain function: check that TensorRT and a GPU are here (before any slow step)
-> export the ONNX graph at a static size (:func:`rtseg.export.onnx.export_onnx`) -> make it
TensorRT-ready (:func:`prepare_onnx_for_tensorrt`) and check it (:func:`check_onnx_for_tensorrt`)
-> parse and build (:func:`build_plan`) -> write the plan and its metadata sidecar
(``fastscnn.plan`` + ``fastscnn.json``: a plan cannot carry metadata itself).

Precision, by TensorRT major version (11 removed the weak-typing builder flags FP16/INT8 and
the INT8 calibrators):

==========  ==========================================  ==========================================
precision   TensorRT 10                                 TensorRT 11
==========  ==========================================  ==========================================
fp32        fp32 ONNX, default flags                    fp32 ONNX (always strongly typed)
fp16        fp16 ONNX, STRONGLY_TYPED network           fp16 ONNX
int8        fp32 ONNX, INT8+FP16 flags, entropy         refused in one line: needs a symmetric
            calibrator over the --calib images          int8 Q/DQ ONNX, which rtseg does not make
==========  ==========================================  ==========================================

fp16 goes through the fp16 ONNX on both versions on purpose: that exact graph is checked against
fp32 in ONNX Runtime on the CPU (tests/export/test_tensorrt.py), so its numerics are tested even
where no GPU is.
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rtseg.errors import RtsegError, require
from rtseg.meta import ModelMeta

__all__ = [
    "export_engine", "build_plan", "prepare_onnx_for_tensorrt", "check_onnx_for_tensorrt",
    "TensorInfo", "PlanInfo", "sidecar_path", "write_sidecar", "read_sidecar",
    "require_tensorrt", "require_cuda_gpu", "cuda_driver_status", "tensorrt_major",
    "TRT_ONNX_OPS", "TRT_OPSET_RANGE", "PLAN_SUFFIXES", "CALIB_SUFFIXES",
]

log = logging.getLogger(__name__)

PLAN_SUFFIXES = (".plan", ".engine")
CALIB_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SIDECAR_FORMAT = "rtseg-tensorrt-sidecar/1"
INSTALL_HINT = "pip install 'rtseg[trt]' (needs an NVIDIA GPU and its driver)"
MAX_CALIB_IMAGES = 500  # entropy calibration saturates long before this; each image is one build-time forward

# Opsets the ONNX-TensorRT parser accepts in every TensorRT 10.x (10.0 documents 9..20; later
# 10.x and 11.x accept more, never less).
TRT_OPSET_RANGE = (9, 20)

# ONNX operators the ONNX-TensorRT parser supports (onnx-tensorrt docs/operators.md, TensorRT
# 10.x support matrix), limited to those already listed for 10.0 so that a plan builds on any
# 10.x or 11.x. Types matter too: see check_onnx_for_tensorrt for the uint8 rule.
TRT_ONNX_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor
Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax
Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod
Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size
Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu
Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


# --------------------------------------------------------------------------------------------
# Environment checks: cheap, and run before anything slow.

def require_tensorrt(feature: str) -> Any:
    """``import tensorrt`` or a one-line RtsegError saying how to get it."""
    return require("tensorrt", extra="trt", feature=feature)


def tensorrt_major(trt: Any) -> int:
    """The major version of an imported ``tensorrt`` module (10, 11, ...)."""
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        raise RtsegError(f"cannot read the TensorRT version ({getattr(trt, '__version__', None)!r})") from None


def cuda_driver_status() -> tuple[int, str]:
    """(number of CUDA GPUs, why none) straight from the NVIDIA driver library, without torch
    or pycuda: ``libcuda`` ``cuInit`` + ``cuDeviceGetCount``. Costs a few milliseconds."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so", "libcuda.dylib"]
    lib = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return 0, "no NVIDIA driver found (libcuda is not loadable)"
    if lib.cuInit(0) != 0:
        return 0, "the NVIDIA driver is installed but cuInit failed (no usable GPU, or a driver/kernel mismatch)"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return 0, "the NVIDIA driver reports no GPU"
    return count.value, ""


def require_cuda_gpu(feature: str) -> int:
    """The number of CUDA GPUs, or a one-line RtsegError saying what is missing."""
    count, why = cuda_driver_status()
    if count < 1:
        raise RtsegError(f"{feature} needs an NVIDIA GPU: {why}; TensorRT runs only on NVIDIA GPUs "
                         f"({INSTALL_HINT})")
    return count


# --------------------------------------------------------------------------------------------
# The metadata sidecar.

@dataclass(frozen=True)
class TensorInfo:
    """One I/O tensor of a plan, addressed by name."""

    name: str
    dtype: str  # numpy dtype name, e.g. "uint8"
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorInfo":
        return cls(name=str(d["name"]), dtype=str(d["dtype"]), shape=tuple(int(v) for v in d["shape"]))


@dataclass(frozen=True)
class PlanInfo:
    """What the sidecar ``<plan stem>.json`` holds: the model's metadata plus the plan's I/O."""

    meta: ModelMeta
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    precision: str  # "fp32" | "fp16" | "int8"
    tensorrt_version: str

    @property
    def input_size(self) -> tuple[int, int]:
        """(h, w) of the plan's NHWC input."""
        shape = self.inputs[0].shape
        return int(shape[1]), int(shape[2])

    def to_dict(self) -> dict[str, Any]:
        return {"format": SIDECAR_FORMAT, "meta": self.meta.to_dict(),
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "precision": self.precision, "tensorrt_version": self.tensorrt_version}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PlanInfo":
        if not isinstance(d, dict) or d.get("format") != SIDECAR_FORMAT:
            raise RtsegError(f"not an rtseg TensorRT sidecar (no '{SIDECAR_FORMAT}' format tag)")
        try:
            info = cls(meta=ModelMeta.from_dict(d["meta"]),
                       inputs=tuple(TensorInfo.from_dict(t) for t in d["inputs"]),
                       outputs=tuple(TensorInfo.from_dict(t) for t in d["outputs"]),
                       precision=str(d["precision"]), tensorrt_version=str(d["tensorrt_version"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RtsegError(f"the sidecar is incomplete or malformed ({type(exc).__name__}: {exc})") from None
        if len(info.inputs) != 1 or len(info.inputs[0].shape) != 4 or len(info.outputs) != 1:
            raise RtsegError("the sidecar must list one NHWC input and one output tensor")
        return info


def sidecar_path(plan: str | Path) -> Path:
    """``fastscnn.plan`` -> ``fastscnn.json``."""
    return Path(plan).with_suffix(".json")


def write_sidecar(plan: str | Path, info: PlanInfo) -> Path:
    path = sidecar_path(plan)
    path.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    return path


def read_sidecar(plan: str | Path) -> PlanInfo:
    """The sidecar of ``plan``, or a one-line RtsegError naming the file and the problem."""
    path = sidecar_path(plan)
    if not path.is_file():
        raise RtsegError(f"{path} is missing: a TensorRT plan needs its metadata sidecar (same stem, .json), "
                         f"written by 'rtseg export --format engine'")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RtsegError(f"{path} is not valid JSON ({exc})") from None
    try:
        return PlanInfo.from_dict(data)
    except RtsegError as exc:
        raise RtsegError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------------
# The ONNX graph TensorRT parses.

def _consumers(graph: Any, name: str) -> list[Any]:
    return [n for n in graph.node if name in n.input]


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def prepare_onnx_for_tensorrt(model: Any) -> Any:
    """Rewrite the exported graph (in place, and returned) so TensorRT accepts its uint8 I/O.

    TensorRT takes uint8 only as a network input or output, converted by a Cast right there
    (onnx-tensorrt operator matrix: "UINT8 is only supported as network input or output").
    1. The exporter writes ``images -> Transpose -> Cast(float)`` (NHWC->NCHW on the bytes); this
       swaps it to ``images -> Cast -> Transpose``: same result, the transpose now on floats.
    2. ``ArgMax(int64) -> Cast(uint8)`` becomes ``ArgMax -> Cast(float) -> Cast(uint8)``: the
       DataType docs allow uint8 conversions only from/to float or half. Class ids < 256 are exact
       in float; the extra cast is one elementwise pass over (N, H, W).
    """
    import onnx
    from onnx import TensorProto

    graph = model.graph
    for inp in graph.input:
        if inp.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        for tr in _consumers(graph, inp.name):
            if tr.op_type != "Transpose":
                continue
            after = _consumers(graph, tr.output[0])
            if len(after) != 1 or after[0].op_type != "Cast":
                continue
            cast = after[0]
            cast_out, cast_in = cast.output[0], inp.name + "_cast"
            cast.input[0], cast.output[0] = inp.name, cast_in
            tr.input[0], tr.output[0] = cast_in, cast_out
            nodes = list(graph.node)
            i, j = nodes.index(tr), nodes.index(cast)
            nodes[i], nodes[j] = cast, tr  # Cast now first; the Transpose sits where the Cast was
            del graph.node[:]
            graph.node.extend(nodes)

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    for out in graph.output:
        if out.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        for node in list(graph.node):
            if out.name in node.output and node.op_type == "Cast" and types.get(node.input[0]) not in floats:
                src = node.input[0]
                hop = onnx.helper.make_node("Cast", [src], [src + "_as_float"], to=TensorProto.FLOAT,
                                            name=(node.name or "ids") + "_to_float")
                node.input[0] = src + "_as_float"
                graph.node.insert(list(graph.node).index(node), hop)
    return model


def _static_dims(value_info: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value_info.type.tensor_type.shape.dim]


def check_onnx_for_tensorrt(model: Any, *, size: tuple[int, int] | None = None) -> list[str]:
    """What would stop TensorRT 10/11 from parsing ``model`` as rtseg runs it; [] when nothing.

    Checks: opset in :data:`TRT_OPSET_RANGE`; only operators in :data:`TRT_ONNX_OPS` (default
    domain); Resize attributes TensorRT implements; one uint8 NHWC input and one uint8 NHW output
    with static shapes (at ``size`` when given); uint8 met only by Casts at the network boundary.
    """
    import onnx
    import onnx.numpy_helper
    from onnx import TensorProto

    problems: list[str] = []
    graph = model.graph
    opset = {o.domain: o.version for o in model.opset_import}.get("")
    lo, hi = TRT_OPSET_RANGE
    if opset is None or not lo <= opset <= hi:
        problems.append(f"opset {opset} is outside {lo}..{hi}, the range every TensorRT 10.x parses")
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"node {node.name or node.op_type}: custom domain {node.domain!r}")
        elif node.op_type not in TRT_ONNX_OPS:
            problems.append(f"node {node.name or node.op_type}: operator {node.op_type} is not in TensorRT's ONNX support matrix")
        if node.op_type == "Resize":
            mode = _attr(node, "mode", "nearest")
            coords = _attr(node, "coordinate_transformation_mode", "half_pixel")
            if mode not in _RESIZE_MODES or coords not in _RESIZE_COORDS or _attr(node, "antialias", 0):
                problems.append(f"node {node.name}: Resize mode={mode} coordinate_transformation_mode={coords} "
                                "is not one TensorRT implements")

    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None or zp.data_type != TensorProto.INT8 or onnx.numpy_helper.to_array(zp).any():
            problems.append(f"node {node.name or node.op_type}: TensorRT takes only symmetric int8 Q/DQ "
                            "(an int8 zero point of 0)")
            break  # one line for the whole graph is enough

    if len(graph.input) != 1 or len(graph.output) != 1:
        problems.append(f"expected one input and one output, found {len(graph.input)} and {len(graph.output)}")
        return problems
    inp, out = graph.input[0], graph.output[0]
    in_dims, out_dims = _static_dims(inp), _static_dims(out)
    if inp.type.tensor_type.elem_type != TensorProto.UINT8 or len(in_dims) != 4 or in_dims[3] != 3:
        problems.append(f"input {inp.name} must be uint8 (N, H, W, 3)")
    if out.type.tensor_type.elem_type != TensorProto.UINT8 or len(out_dims) != 3:
        problems.append(f"output {out.name} must be uint8 (N, H, W)")
    if None in in_dims or None in out_dims:
        problems.append(f"shapes must be static: input {in_dims}, output {out_dims} (export with dynamic=False)")
    elif size is not None and (tuple(in_dims[1:3]) != tuple(size) or tuple(out_dims[1:3]) != tuple(size)):
        problems.append(f"shapes {in_dims} -> {out_dims} are not at the export size {size[0]}x{size[1]}")
    for node in _consumers(graph, inp.name):
        if node.op_type != "Cast":
            problems.append(f"the uint8 input feeds {node.op_type} {node.name!r}; TensorRT needs a Cast first "
                            "(run prepare_onnx_for_tensorrt)")
    for node in graph.node:
        if out.name in node.output and node.op_type != "Cast":
            problems.append(f"the uint8 output comes from {node.op_type} {node.name!r}, not a Cast")
    return problems


# --------------------------------------------------------------------------------------------
# Parse and build.

def _calibration_images(calib: Path | None) -> list[Path]:
    if calib is None:
        raise RtsegError("--int8 needs --calib DIR: a folder of representative frames (jpg/png) to calibrate on")
    if not calib.is_dir():
        raise RtsegError(f"--calib {calib} is not a folder")
    files = sorted(p for p in calib.iterdir() if p.suffix.lower() in CALIB_SUFFIXES)
    if not files:
        raise RtsegError(f"--calib {calib} holds no images ({', '.join(CALIB_SUFFIXES)})")
    if len(files) < 32:
        log.warning("calibrating int8 on only %d images; a few hundred representative frames are better", len(files))
    return files[:MAX_CALIB_IMAGES]


def _make_calibrator(trt: Any, files: Sequence[Path], shape: tuple[int, ...]) -> Any:
    """A TensorRT 10 IInt8EntropyCalibrator2 feeding ``files`` as uint8 NHWC batches of ``shape``
    (the network's own input: the graph normalises on the GPU). Device memory comes from the same
    CUDA backend the engine uses (torch when it has CUDA, else pycuda)."""
    import cv2

    from rtseg.engines import cuda_memory  # looked up at call time: tests put a stand-in there

    n, h, w, _ = shape
    cuda = cuda_memory.open_cuda(0)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 trampolines need the explicit base init
            with cuda.activate():
                self.batch = cuda.buffer(shape)  # device memory + pinned host mirror, allocated once
            self.next = 0

        def get_batch_size(self) -> int:
            return n

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.next + n > len(files):
                return None  # end of data (a ragged last batch is dropped)
            for i in range(n):
                img = cv2.imread(str(files[self.next + i]), cv2.IMREAD_COLOR)
                if img is None:
                    raise RtsegError(f"cannot read calibration image {files[self.next + i]}")
                cv2.resize(img, (w, h), dst=self.batch.host[i], interpolation=cv2.INTER_LINEAR)
            self.next += n
            with cuda.activate():
                self.batch.to_device(n)
                cuda.synchronize()  # TensorRT reads the batch on its own stream
            return [self.batch.ptr]

        def read_calibration_cache(self) -> None:
            return None  # always calibrate afresh: a stale cache from other images would go unnoticed

        def write_calibration_cache(self, cache: Any) -> None:
            return None

        def close(self) -> None:
            cuda.close()

    return EntropyCalibrator()


def _parse(trt: Any, logger: Any, network: Any, onnx_path: Path) -> Any:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)).strip().replace("\n", " ") for i in range(parser.num_errors)]
        raise RtsegError(f"TensorRT's ONNX parser rejected the graph: {'; '.join(errors)[:400] or 'no detail given'}")
    return parser


def _tensor_info(trt: Any, tensor: Any) -> TensorInfo:
    import numpy as np

    return TensorInfo(name=tensor.name, dtype=np.dtype(trt.nptype(tensor.dtype)).name, shape=tuple(tensor.shape))


def build_plan(trt: Any, onnx_path: Path, *, precision: str, workspace_gb: float,
               calib_files: Sequence[Path] = ()) -> tuple[bytes, tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Parse ``onnx_path`` and build a serialized plan. Returns (plan bytes, inputs, outputs).

    ``precision`` picks the network flags (see the module docstring); the ONNX must already be
    the fp16 / Q/DQ graph where that precision needs one. Building takes tens of seconds to
    minutes: TensorRT times candidate kernels on this GPU, so a plan is tied to this GPU model
    and TensorRT version.
    """
    major = tensorrt_major(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = precision == "fp16" or major >= 11
    flags = 0
    if strongly_typed and major < 11:  # on 11 strong typing is always on and the flag is deprecated
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = _parse(trt, logger, network, onnx_path)  # keep the parser alive until the build is done

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    inputs = tuple(_tensor_info(trt, network.get_input(i)) for i in range(network.num_inputs))
    outputs = tuple(_tensor_info(trt, network.get_output(i)) for i in range(network.num_outputs))
    calibrator = None
    if precision == "int8" and major < 11:
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers without an int8 kernel fall back to fp16, not fp32
        calibrator = _make_calibrator(trt, calib_files, inputs[0].shape)
        config.int8_calibrator = calibrator
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.close()
    del parser
    if serialized is None:
        raise RtsegError("TensorRT could not build the engine (its log above says why; a larger --workspace may help)")
    return bytes(serialized), inputs, outputs


# --------------------------------------------------------------------------------------------
# The whole export.

def export_engine(weights: Path, output: Path, *, size: tuple[int, int], fp16: bool = False, int8: bool = False,
                  calib: Path | None = None, workspace_gb: float = 4.0, cache_key: str | None = None) -> Path:
    """Build ``output`` (.plan/.engine) from an rtseg checkpoint, plus its ``.json`` sidecar.
    ``cache_key`` is recorded in the sidecar's metadata (rtseg.engines.cache).

    Raises RtsegError (one line) for bad options and, before any slow step, when TensorRT or an
    NVIDIA GPU is missing.
    """
    weights, output = Path(weights), Path(output)
    if output.suffix.lower() not in PLAN_SUFFIXES:
        raise RtsegError(f"--output {output} must end in {' or '.join(PLAN_SUFFIXES)}")
    if not workspace_gb > 0:
        raise RtsegError(f"--workspace must be a positive number of GiB, got {workspace_gb}")
    h, w = (int(v) for v in size)  # any size >= 32: the network resizes to explicit sizes, never by factors
    if not weights.is_file():
        raise RtsegError(f"--weights {weights} does not exist")

    trt = require_tensorrt("export --format engine")
    require_cuda_gpu("export --format engine")
    major = tensorrt_major(trt)
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    calib_files = _calibration_images(calib) if int8 else []
    if int8 and major >= 11:
        raise RtsegError(f"--int8 on TensorRT {trt.__version__} needs a symmetric int8 Q/DQ ONNX (TensorRT 11 removed "
                         "int8 calibration) and this rtseg has no such quantiser yet; use --fp16, or TensorRT 10")

    import onnx

    from rtseg.checkpoint import build_from_checkpoint
    from rtseg.export.onnx import export_onnx, read_onnx_meta

    model, meta = build_from_checkpoint(weights)
    with tempfile.TemporaryDirectory(prefix="rtseg-trt-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        log.info("exporting %s to ONNX at %dx%d (%s)", weights, h, w, precision)
        export_onnx(model, meta, onnx_path, size=(h, w), fp16=precision == "fp16", dynamic=False)
        meta = read_onnx_meta(onnx_path)  # input_size = the export size; extra["export"] records how
        graph = prepare_onnx_for_tensorrt(onnx.load(str(onnx_path)))
        problems = check_onnx_for_tensorrt(graph, size=(h, w))
        if problems:
            raise RtsegError(f"the exported graph is not one TensorRT can parse: {'; '.join(problems)[:400]}")
        onnx.save(graph, str(onnx_path))
        log.info("building the TensorRT %s engine (%s); this takes a while", trt.__version__, precision)
        plan, inputs, outputs = build_plan(trt, onnx_path, precision=precision, workspace_gb=workspace_gb,
                                           calib_files=calib_files)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(plan)
    extra = dict(meta.extra)
    extra["export"] = {**dict(extra.get("export", {})), "format": "tensorrt", "precision": precision,
                       "tensorrt": str(trt.__version__)}
    if cache_key is not None:
        extra["cache_key"] = cache_key
    write_sidecar(output, PlanInfo(meta=dataclasses.replace(meta, extra=extra), inputs=inputs, outputs=outputs,
                                   precision=precision, tensorrt_version=str(trt.__version__)))
    return output
