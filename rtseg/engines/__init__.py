"""Inference engines behind one interface (:class:`~rtseg.engines.base.Engine`), chosen by file suffix.

==================  =========================================================
``.pt`` ``.pth``    PyTorch checkpoint (:mod:`rtseg.engines.torch_engine`)
``.onnx``           ONNX Runtime or OpenVINO (``runtime=``; :mod:`.ort_engine`,
                    :mod:`.openvino_engine`)
``.plan`` ``.engine`` TensorRT (:mod:`rtseg.engines.trt_engine`)
==================  =========================================================

``runtime=`` runs an artifact elsewhere: a ``.pt`` on ONNX Runtime, OpenVINO or TensorRT is
exported once into a cache (:mod:`rtseg.engines.cache`) and loaded from there. ``auto`` picks
the fastest runtime installed for the device (:func:`resolve_runtime`).

Backends are imported when first used, so a missing optional package only matters to the
artifacts that need it.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from rtseg.engines.base import Engine, check_streams, parse_size
from rtseg.errors import RtsegError

__all__ = ["Engine", "load_engine", "open_engine", "default_size", "auto_streams", "SUFFIXES", "RUNTIMES",
           "ONNX_RUNTIMES", "resolve_onnx_runtime", "resolve_runtime", "runtime_reason"]

# suffix -> backend family; the order is the one error messages list.
SUFFIXES = {".pt": "pytorch", ".pth": "pytorch", ".onnx": "onnx", ".plan": "tensorrt", ".engine": "tensorrt"}
ONNX_RUNTIMES = ("auto", "onnxruntime", "openvino")
RUNTIMES = ("auto", "pytorch", "onnxruntime", "openvino", "tensorrt")


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


def _cuda(device: str | None) -> bool:
    text = (device or "auto").strip().lower()
    if text == "auto":
        import torch

        return torch.cuda.is_available()
    return text.startswith("cuda")


def resolve_runtime(path: str | Path | None, runtime: str | None, device: str | None) -> str:
    """The runtime that runs ``path`` (None: a ``.pt``, the bundled weights) on ``device``.

    ``auto`` (or None) is the fastest one installed: for a ``.pt`` on a CPU, OpenVINO (run at f32
    by :func:`load_engine` when asked for ``auto``, so the ids are PyTorch's; 2.6x PyTorch fp32 at
    312x552 on this project's machine), else ONNX Runtime (2.9x at 1024x2048,
    benchmarks/results/engine_latency.json); on CUDA, TensorRT when it imports, else PyTorch fp16. A ``.onnx`` as :func:`resolve_onnx_runtime`; a plan on TensorRT.
    An explicit runtime must be able to run the artifact."""
    choice = (runtime or "auto").strip().lower()
    if choice not in RUNTIMES:
        raise RtsegError(f"--runtime {runtime!r} is not allowed; use one of {', '.join(RUNTIMES)}")
    family = SUFFIXES.get(Path(path).suffix.lower(), "pytorch") if path is not None else "pytorch"
    if family == "tensorrt":
        if choice not in ("auto", "tensorrt"):
            raise RtsegError(f"--runtime {choice}: a TensorRT plan runs on TensorRT only")
        return "tensorrt"
    if family == "onnx":
        if choice in ("pytorch", "tensorrt"):
            raise RtsegError(f"--runtime {choice} needs the .pt checkpoint; a .onnx file runs on onnxruntime or "
                             "openvino (rtseg export --format engine makes a TensorRT plan from the .pt)")
        return resolve_onnx_runtime(choice, device)
    if choice != "auto":
        return choice
    if _cuda(device):
        return "tensorrt" if importlib.util.find_spec("tensorrt") is not None else "pytorch"
    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"


def runtime_reason(runtime: str, device: str | None) -> str:
    """Why ``auto`` picks ``runtime`` here, in a few words (rtseg doctor)."""
    cuda = _cuda(device)
    return {
        "openvino": "fastest on a CPU; at f32, the same ids as PyTorch (--runtime openvino: bf16 where the CPU has it)",
        "onnxruntime": "OpenVINO is not installed" if not cuda else "for .onnx files on CUDA",
        "tensorrt": "TensorRT imports and a CUDA GPU is present",
        "pytorch": "CUDA GPU present, TensorRT not installed: PyTorch fp16",
    }.get(runtime, "")


def _backend(module: str, cls: str) -> Any:
    """``rtseg.engines.<module>.<cls>``, imported now; a missing backend module is one line."""
    name = f"rtseg.engines.{module}"
    try:
        return getattr(importlib.import_module(name), cls)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the module is there but needs a package that is not: its own message
            raise
        raise RtsegError(f"this rtseg has no {cls} ({name} is missing); reinstall rtseg") from None


def auto_streams(engine: str | Path | None, device: str, *, live: bool, sequential: bool = False,
                 runtime: str | None = None) -> int:
    """--streams 0: two streams where they pay, one elsewhere.

    On a CPU the pipeline's own threads (decode, colour, encode) share the cores with the network.
    A one-stream network spreads each frame over every core and stalls whenever one of them is
    taken; two single-threaded streams keep working. On 1024x2048 video written as H.264 on this
    2-core machine, pipelined over sequential went from 1.02x to 1.36x with ONNX Runtime and
    from 1.04x to 1.20x with OpenVINO (rtseg bench --streams 1 and 2,
    benchmarks/results/bench_*_512x1024*.json). A live source wants the lowest latency instead
    (one stream), and so do --sequential runs; PyTorch and TensorRT engines have one stream.
    ``engine`` None is the bundled ``.pt``; ``runtime`` as for :func:`resolve_runtime`."""
    if live or sequential or resolve_runtime(engine, runtime, device) not in ("onnxruntime", "openvino"):
        return 1
    if device.strip().lower() not in ("cpu", "auto"):
        return 1
    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def load_engine(path: str | Path, *, device: str = "cpu", size: str | Sequence[int] | None = None,
                runtime: str | None = None, threads: int = 0, streams: int = 1,
                note: Callable[[str], None] | None = None, **kw: Any) -> Engine:
    """Load any rtseg artifact as an :class:`Engine`; its suffix picks the backend.

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (OpenVINO also takes its own device names).
    ``size``: inference (h, w) or ``"HxW"``; default: the artifact's fixed size, else its
    metadata's ``input_size``. ``runtime``: one of :data:`RUNTIMES`; None runs the artifact on
    its own kind of runtime (PyTorch for a ``.pt``, ``auto`` for a ``.onnx``), ``auto`` on the
    fastest one here (:func:`resolve_runtime`); a ``.pt`` on another runtime is exported once
    into the cache (``note`` gets the line that says so). ``threads``: CPU threads for the
    network (0 = one per core); a TensorRT engine runs on the GPU and ignores it. ``streams``:
    frames inferred at once from different threads (``Engine.streams``), on ONNX Runtime and
    OpenVINO. Extra keywords go to the backend.
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
    rt = resolve_runtime(path, runtime, device) if runtime is not None or family != "pytorch" else "pytorch"
    if check_streams(streams) > 1 and rt not in ("onnxruntime", "openvino"):
        raise RtsegError(f"--streams {streams} applies to ONNX Runtime and OpenVINO; {path.name} runs on {rt}")
    if family == "pytorch" and rt != "pytorch":
        from rtseg.checkpoint import load_checkpoint
        from rtseg.engines.cache import cached_artifact

        size = size or tuple(load_checkpoint(path)["meta"].input_size)
        path = cached_artifact(path, rt, size, fp16=rt == "tensorrt", **({"note": note} if note else {}))
        family = "tensorrt" if rt == "tensorrt" else "onnx"

    if family == "pytorch":
        from rtseg.engines.torch_engine import TorchEngine

        return TorchEngine(path, device=device, size=size, threads=threads, **kw)
    if family == "tensorrt":
        return _backend("trt_engine", "TensorRTEngine")(path, device=device, size=size, **kw)
    if rt == "openvino":
        if (runtime or "").strip().lower() == "auto" and "precision" not in kw:
            # auto is exact: f32 gives PyTorch's class ids (bf16 changed 3% of them on a 540x960 street clip
            # at 312x552, benchmarks/results/defaults.json) and is still 2.6x PyTorch there; --runtime
            # openvino keeps OpenVINO's own choice (bf16 where the CPU has it: 1.9x faster again).
            kw["precision"] = "f32"
        return _backend("openvino_engine", "OpenVINOEngine")(path, device=device, size=size, threads=threads,
                                                              streams=streams, **kw)
    from rtseg.engines.ort_engine import OrtEngine

    return OrtEngine(path, device=device, size=size, threads=threads, streams=streams, **kw)


def default_size(path: str | Path, frame_size: Sequence[int]) -> tuple[int, int] | None:
    """The inference size for frames of ``frame_size`` (H, W) when none is given: the artifact's
    pixel count in the frame's shape, for artifacts that take any size (a ``.pt``, a dynamic
    ``.onnx``); None (the artifact's own size) for fixed-size ones."""
    from rtseg.engines.base import aspect_size

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        from rtseg.checkpoint import load_checkpoint

        meta = load_checkpoint(path)["meta"]
    elif suffix == ".onnx":
        from rtseg.export.onnx import read_onnx_meta

        meta = read_onnx_meta(path)
        if not meta.extra.get("export", {}).get("dynamic"):
            return None
    else:
        return None
    return aspect_size(meta.input_size, frame_size)


def open_engine(weights: str | Path | None = None, *, device: str = "cpu", size: str | Sequence[int] | None = None,
                runtime: str | None = "auto", frame_size: Sequence[int] | None = None, threads: int = 0,
                streams: int = 1, note: Callable[[str], None] | None = None) -> Engine:
    """The engine ``rtseg run`` uses: ``weights`` (None: the bundled CamVid weights) on
    ``runtime`` (auto: the fastest here), at ``size`` or, for frames of ``frame_size`` (H, W), at
    a size in their shape (:func:`default_size`). ``note`` (default: a logged warning) gets the
    one-line notices: an export into the cache, a size that stretches the frames by over 5%."""
    import logging

    from rtseg.bundled import DEFAULT_WEIGHTS, bundled
    from rtseg.engines.base import aspect_distortion

    say = note or logging.getLogger(__name__).warning
    path = Path(weights) if weights is not None else bundled(DEFAULT_WEIGHTS, "CamVid weights")
    size = parse_size(size)
    if size is None and frame_size is not None and path.is_file():
        size = default_size(path, frame_size)
    engine = load_engine(path, device=device, size=size, runtime=runtime or "auto", threads=threads, streams=streams,
                         note=say)
    if frame_size is not None and aspect_distortion(engine.input_size, frame_size) > 0.05:
        (h, w), (fh, fw) = engine.input_size, frame_size
        say(f"warning: inference at {h}x{w} stretches the {fh}x{fw} frames by "
            f"{100 * aspect_distortion(engine.input_size, frame_size):.0f}% (sizes are HxW)")
    return engine
