"""Inference engines behind one interface (:class:`~rtseg.engines.base.Engine`), chosen by file suffix.

==================  =========================================================
``.pt`` ``.pth``    PyTorch checkpoint (:mod:`rtseg.engines.torch_engine`)
``.onnx``           ONNX Runtime or OpenVINO (``runtime=``; :mod:`.ort_engine`,
                    :mod:`.openvino_engine`)
``.plan`` ``.engine`` TensorRT (:mod:`rtseg.engines.trt_engine`)
==================  =========================================================

Backends are imported when first used, so a missing optional package only matters to the
artifacts that need it.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Sequence

from rtseg.engines.base import Engine, check_streams, parse_size
from rtseg.errors import RtsegError

__all__ = ["Engine", "load_engine", "auto_streams", "SUFFIXES", "ONNX_RUNTIMES", "resolve_onnx_runtime"]

# suffix -> backend family; the order is the one error messages list.
SUFFIXES = {".pt": "pytorch", ".pth": "pytorch", ".onnx": "onnx", ".plan": "tensorrt", ".engine": "tensorrt"}
ONNX_RUNTIMES = ("auto", "onnxruntime", "openvino")


def _known() -> str:
    return ".pt/.pth (PyTorch), .onnx (ONNX Runtime or OpenVINO), .plan/.engine (TensorRT)"


def resolve_onnx_runtime(runtime: str | None, device: str | None) -> str:
    """Which runtime runs a ``.onnx`` file: ``onnxruntime`` or ``openvino``.

    ``auto`` (and None) pick the fastest runtime available for ``device``: on the CPU, OpenVINO
    when it is installed (it runs bf16 on CPUs with AVX512-BF16/AMX, and f32 about as fast as ONNX
    Runtime elsewhere; benchmarks/cpu_engines.py), else ONNX Runtime; on CUDA, ONNX Runtime.
    """
    choice = (runtime or "auto").strip().lower()
    if choice not in ONNX_RUNTIMES:
        raise RtsegError(f"unknown ONNX runtime {runtime!r}; use one of {', '.join(ONNX_RUNTIMES)}")
    if choice != "auto":
        return choice
    text = (device or "auto").strip().lower()
    if text == "auto":  # the same rule as the ORT engine: CUDA when onnxruntime has it, else CPU
        import onnxruntime

        text = "cuda" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu"
    if text == "cpu" and importlib.util.find_spec("openvino") is not None:
        return "openvino"
    return "onnxruntime"


def _backend(module: str, cls: str) -> Any:
    """``rtseg.engines.<module>.<cls>``, imported now; a missing backend module is one line."""
    name = f"rtseg.engines.{module}"
    try:
        return getattr(importlib.import_module(name), cls)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the module is there but needs a package that is not: its own message
            raise
        raise RtsegError(f"this rtseg has no {cls} ({name} is missing); reinstall rtseg") from None


def auto_streams(engine: str | Path | None, device: str, *, live: bool, sequential: bool = False) -> int:
    """--streams 0: two streams where they pay, one elsewhere.

    On a CPU the pipeline's own threads (decode, colour, encode) share the cores with the network.
    A one-stream network spreads each frame over every core and stalls whenever one of them is
    taken; two single-threaded streams keep working. On 1024x2048 video written as H.264 on this
    2-core machine, pipelined over sequential went from 1.02x to 1.36x with ONNX Runtime and
    from 1.04x to 1.20x with OpenVINO (rtseg bench --streams 1 and 2,
    benchmarks/results/bench_*_512x1024*.json). A live source wants the lowest latency instead
    (one stream), and so do --sequential runs; PyTorch and TensorRT engines have one stream."""
    if live or sequential or engine is None or Path(engine).suffix.lower() != ".onnx":
        return 1
    if device.strip().lower() not in ("cpu", "auto"):
        return 1
    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def load_engine(path: str | Path, *, device: str = "cpu", size: str | Sequence[int] | None = None,
                runtime: str | None = None, threads: int = 0, streams: int = 1, **kw: Any) -> Engine:
    """Load any rtseg artifact as an :class:`Engine`; its suffix picks the backend.

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (OpenVINO also takes its own device names).
    ``size``: inference (h, w) or ``"HxW"``; default: the artifact's fixed size, else its
    metadata's ``input_size``. ``runtime``: for ``.onnx`` only (``auto``, ``onnxruntime``,
    ``openvino``). ``threads``: CPU threads for the network (0 = one per core); a TensorRT
    engine runs on the GPU and ignores it. ``streams``: frames inferred at once from different
    threads (``Engine.streams``), for ``.onnx`` files. Extra keywords go to the backend.
    """
    if threads < 0:
        raise RtsegError(f"--threads must be >= 0 (0 = one per core); got {threads}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise RtsegError(f"cannot tell the engine for {path.name!r} from its suffix {suffix or '(none)'!r}; "
                         f"known: {_known()}")
    if not path.is_file():
        raise RtsegError(f"engine file not found: {path}")
    size = parse_size(size)
    family = SUFFIXES[suffix]
    if runtime is not None and family != "onnx":
        raise RtsegError(f"runtime={runtime!r} applies to .onnx files only; {path.name} is a {family} artifact")
    if check_streams(streams) > 1 and family != "onnx":
        raise RtsegError(f"--streams {streams} applies to .onnx files (ONNX Runtime, OpenVINO); {path.name} is a "
                         f"{family} artifact")

    if family == "pytorch":
        from rtseg.engines.torch_engine import TorchEngine

        return TorchEngine(path, device=device, size=size, threads=threads, **kw)
    if family == "tensorrt":
        return _backend("trt_engine", "TensorRTEngine")(path, device=device, size=size, **kw)
    if resolve_onnx_runtime(runtime, device) == "openvino":
        return _backend("openvino_engine", "OpenVINOEngine")(path, device=device, size=size, threads=threads,
                                                              streams=streams, **kw)
    from rtseg.engines.ort_engine import OrtEngine

    return OrtEngine(path, device=device, size=size, threads=threads, streams=streams, **kw)
