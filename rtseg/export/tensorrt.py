"""Export a checkpoint to a TensorRT engine (``.plan``) with the Python builder.

Steps, each a plain function: check that TensorRT and a GPU are here (before any slow step)
-> export the ONNX graph at a static size (:func:`rtseg.export.onnx.export_onnx`) -> make it
TensorRT-ready (``prepare_onnx_for_tensorrt``) and check it (``check_onnx_for_tensorrt``)
-> parse and build (:func:`build_plan`) -> write the plan and its metadata sidecar
(:mod:`rtseg.formats.plan`). The graph steps are :mod:`rtseg.export.trt_graph`; the TensorRT and
GPU checks :mod:`rtseg.gpu`.

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

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

from rtseg.errors import RtsegError
from rtseg.export.trt_graph import check_onnx_for_tensorrt, prepare_onnx_for_tensorrt
from rtseg.formats import suffixes_of
from rtseg.formats.plan import PlanInfo, TensorInfo, write_sidecar
from rtseg.gpu import require_cuda_gpu, require_tensorrt, tensorrt_major

__all__ = ["export_engine", "build_plan", "CALIB_SUFFIXES"]

log = logging.getLogger(__name__)

CALIB_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_CALIB_IMAGES = 500  # entropy calibration saturates long before this; each image is one build-time forward


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

    from rtseg.gpu import cuda as gpu_cuda  # looked up at call time: tests put a stand-in there

    n, h, w, _ = shape
    cuda = gpu_cuda.open_cuda(0)

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
    if output.suffix.lower() not in suffixes_of("tensorrt"):
        raise RtsegError(f"--output {output} must end in {' or '.join(suffixes_of('tensorrt'))}")
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

    from rtseg.export.onnx import export_onnx
    from rtseg.formats.checkpoint import build_from_checkpoint
    from rtseg.formats.onnx_meta import read_onnx_meta

    model, meta = build_from_checkpoint(weights)
    with tempfile.TemporaryDirectory(prefix="rtseg-trt-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        log.info("exporting %s to ONNX at %dx%d (%s)", weights, h, w, precision)
        export_onnx(model, meta, onnx_path, size=(h, w), fp16=precision == "fp16", dynamic=False,
                    scores=False)
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
