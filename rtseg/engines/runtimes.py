"""The one table of runtimes: what each runs, where, and how it is loaded.

========================  =====================  ===========  =========  =============
runtime                   runs                   devices      streams    a ``.pt`` is
========================  =====================  ===========  =========  =============
``pytorch``               ``.pt`` ``.pth``       cpu, cuda    1          run as it is
``onnxruntime``           ``.onnx``              cpu, cuda    several    exported to ``.onnx``
``openvino``              ``.onnx``              cpu, GPU...  several    exported to ``.onnx``
``tensorrt``              ``.plan`` ``.engine``  cuda         1          built into a ``.plan``
========================  =====================  ===========  =========  =============

A ``.pt`` on another runtime is exported once into the cache (:mod:`rtseg.engines.cache`).
``auto`` runs the runtime measured fastest here (:mod:`rtseg.engines.probe`); :func:`resolve_runtime`
is the fixed rule it falls back to (``RTSEG_AUTO_PROBE=0``) and what it asks before anything is
measured (a plan's runtime). :func:`runtime_streams` says how many streams pay on a runtime. The file
suffixes themselves are a format fact (:data:`rtseg.formats.SUFFIXES`); this table says who runs them.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtseg.devices import Device
from rtseg.engines.base import engine_device
from rtseg.errors import RtsegError
from rtseg.formats import SUFFIXES

__all__ = ["Runtime", "TABLE", "RUNTIMES", "ONNX_RUNTIMES", "PRECISIONS", "SUFFIXES", "artifact_family",
           "known_suffixes", "check_precision", "runtime_device", "on_cuda", "resolve_runtime", "resolve_onnx_runtime",
           "runtime_reason", "runtime_streams", "auto_streams", "reduced_default"]

# The values --precision takes, one name across runtimes (auto: the probe's or the runtime's own).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_PRECISION_ALIASES = {"f32": "fp32", "float32": "fp32", "f16": "fp16", "half": "fp16", "float16": "fp16",
                      "bfloat16": "bf16"}


def check_precision(precision: str | None) -> str:
    """``precision`` as one of :data:`PRECISIONS` (OpenVINO's f32/f16 spellings taken too)."""
    text = (precision or "auto").strip().lower()
    text = _PRECISION_ALIASES.get(text, text)
    if text not in PRECISIONS:
        raise RtsegError(f"--precision {precision!r} is not allowed; use one of {', '.join(PRECISIONS)}")
    return text


@dataclass(frozen=True)
class Runtime:
    """One row of :data:`TABLE`."""

    name: str  # the --runtime value
    label: str  # how messages name it
    suffixes: tuple[str, ...]  # the artifacts it runs as they are
    module: str  # rtseg.engines.<module> holds the backend ...
    cls: str  # ... and this is its Engine class
    devices: tuple[str, ...]  # the --device kinds it takes (OpenVINO: also its own device names)
    streams: bool  # takes --streams > 1 (several infer calls at once, from different threads)
    threads: bool  # takes --threads (CPU threads for the network)
    cache_suffix: str | None  # what a .pt is exported to for it (None: it runs the .pt itself)
    cache_fp16: bool = False  # that export is fp16 (TensorRT: the fp16 plan is the one worth running)
    # --precision is a hint the runtime applies to the fp32 export (OpenVINO); False: it picks the
    # export's own precision, fp32 or fp16 (rtseg exports no bf16 graph).
    precision_hint: bool = False
    # A function of the backend module, (precision, cuda: bool) -> None, that refuses a precision
    # the runtime would not run, before a .pt is exported for it for nothing (None: no check).
    export_check: str | None = None
    # Keywords its engine gets when --runtime auto picked it, unless the caller gave them.
    auto_kw: tuple[tuple[str, Any], ...] = ()

    def backend(self) -> Any:
        """The backend module, imported now; a missing backend module is one line."""
        name = f"rtseg.engines.{self.module}"
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module is there but needs a package that is not: its own message
                raise
            raise RtsegError(f"this rtseg has no {self.cls} ({name} is missing); reinstall rtseg") from None

    def engine_class(self) -> Any:
        """The backend's Engine class, imported now."""
        return getattr(self.backend(), self.cls)

    def export_fp16(self, precision: str, device: str | None) -> bool:
        """Whether a ``.pt`` is exported in fp16 for this runtime at ``precision`` (one of
        :data:`PRECISIONS`) on ``device``; a precision it would not run is a one-line error, said
        before the export."""
        if self.export_check is not None:
            getattr(self.backend(), self.export_check)(precision, on_cuda(device))
        if self.precision_hint:
            return False  # one fp32 export; the runtime computes at the precision it is told
        if precision == "bf16":
            raise RtsegError(f"--precision bf16: rtseg exports fp32 or fp16 for {self.label}; use fp32, fp16 or auto")
        return self.cache_fp16 if precision == "auto" else precision == "fp16"


TABLE: dict[str, Runtime] = {row.name: row for row in (
    Runtime("pytorch", "PyTorch", (".pt", ".pth"), "torch_engine", "TorchEngine", ("cpu", "cuda"),
            streams=False, threads=True, cache_suffix=None),
    Runtime("onnxruntime", "ONNX Runtime", (".onnx",), "ort_engine", "OrtEngine", ("cpu", "cuda"),
            streams=True, threads=True, cache_suffix=".onnx", export_check="check_export_precision"),
    # auto without probing runs OpenVINO at f32 (PyTorch's class ids); the probe weighs bf16 itself.
    # --runtime openvino keeps OpenVINO's own choice (bf16 where the CPU has it).
    Runtime("openvino", "OpenVINO", (".onnx", ".xml"), "openvino_engine", "OpenVINOEngine", ("cpu", "GPU", "NPU"),
            streams=True, threads=True, cache_suffix=".onnx", precision_hint=True, auto_kw=(("precision", "f32"),)),
    Runtime("tensorrt", "TensorRT", (".plan", ".engine"), "trt_engine", "TensorRTEngine", ("cuda",),
            streams=False, threads=False, cache_suffix=".plan", cache_fp16=True),
)}
RUNTIMES = ("auto", *TABLE)  # the values --runtime takes
ONNX_RUNTIMES = ("auto", *(r.name for r in TABLE.values() if ".onnx" in r.suffixes))
# Device names some runtime takes besides auto/cpu/cuda[:N] (OpenVINO's GPU, NPU).
_OTHER_DEVICES = tuple(dict.fromkeys(d for r in TABLE.values() for d in r.devices if d not in ("cpu", "cuda")))


def known_suffixes() -> str:
    """'.pt/.pth (PyTorch), .onnx (ONNX Runtime or OpenVINO), .plan/.engine (TensorRT)'."""
    families: dict[str, list[str]] = {}
    for suffix, family in SUFFIXES.items():
        families.setdefault(family, []).append(suffix)
    parts = []
    for suffixes in families.values():
        who = " or ".join(r.label for r in TABLE.values() if suffixes[0] in r.suffixes)
        parts.append(f"{'/'.join(suffixes)} ({who})")
    return ", ".join(parts)


def artifact_family(path: str | Path) -> str:
    """``pytorch``, ``onnx`` or ``tensorrt`` from ``path``'s suffix; a one-line error for any other."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise RtsegError(f"cannot tell the engine for {path.name!r} from its suffix {suffix or '(none)'!r}; "
                         f"known: {known_suffixes()}")
    return SUFFIXES[suffix]


def runtime_device(device: str | None) -> Device:
    """``device`` as some runtime of the table takes it (cpu, cuda[:N], auto, OpenVINO's GPU...);
    a one-line error for anything else. ``auto`` is left unresolved."""
    return engine_device(device, others=_OTHER_DEVICES)


def on_cuda(device: str | None) -> bool:
    """Whether ``device`` means a CUDA GPU here (``auto``: when PyTorch sees one)."""
    def torch_cuda() -> bool:
        import torch

        return torch.cuda.is_available()

    return runtime_device(device).resolve(torch_cuda).is_cuda


def resolve_onnx_runtime(runtime: str | None, device: str | None) -> str:
    """Which runtime runs a ``.onnx`` file: ``onnxruntime`` or ``openvino``.

    ``auto`` (and None) pick the fastest runtime available for ``device``: on the CPU, OpenVINO
    when it is installed (bf16 on CPUs with AVX512-BF16/AMX, f32 about as fast as ONNX Runtime
    elsewhere; benchmarks/cpu_engines.py), else ONNX Runtime; on CUDA, ONNX Runtime.
    """
    choice = (runtime or "auto").strip().lower()
    if choice not in ONNX_RUNTIMES:
        raise RtsegError(f"unknown ONNX runtime {runtime!r}; use one of {', '.join(ONNX_RUNTIMES)}")
    if choice != "auto":
        return choice

    def ort_cuda() -> bool:  # the same rule as the ORT engine: CUDA when onnxruntime has it, else CPU
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()

    if runtime_device(device).resolve(ort_cuda).kind == "cpu" and importlib.util.find_spec("openvino") is not None:
        return "openvino"
    return "onnxruntime"


def resolve_runtime(path: str | Path | None, runtime: str | None, device: str | None) -> str:
    """The runtime that runs ``path`` (None: a ``.pt``, the bundled weights) on ``device``.

    ``auto`` (or None) by the fixed rule (what open_engine measures instead: rtseg.engines.probe): for a ``.pt`` on a CPU, OpenVINO (at f32 when
    asked for ``auto``, so the ids are PyTorch's), else ONNX Runtime (benchmarks/results/
    engine_latency.json); on CUDA, TensorRT when it imports, else PyTorch fp16. A ``.onnx`` as
    :func:`resolve_onnx_runtime`; a plan on TensorRT; an OpenVINO IR on OpenVINO. An explicit runtime must be able to run the artifact."""
    choice = (runtime or "auto").strip().lower()
    if choice not in RUNTIMES:
        raise RtsegError(f"--runtime {runtime!r} is not allowed; use one of {', '.join(RUNTIMES)}")
    family = SUFFIXES.get(Path(path).suffix.lower(), "pytorch") if path is not None else "pytorch"
    if family == "tensorrt":
        if choice not in ("auto", "tensorrt"):
            raise RtsegError(f"--runtime {choice}: a TensorRT plan runs on TensorRT only")
        return "tensorrt"
    if family == "openvino":
        if choice not in ("auto", "openvino"):
            raise RtsegError(f"--runtime {choice}: an OpenVINO IR (.xml) runs on OpenVINO only (run the model's "
                             "ONNX export on the others)")
        return "openvino"
    if family == "onnx":
        if choice in ("pytorch", "tensorrt"):
            raise RtsegError(f"--runtime {choice} needs the .pt checkpoint; a .onnx file runs on onnxruntime or "
                             "openvino (rtseg export --format engine makes a TensorRT plan from the .pt)")
        return resolve_onnx_runtime(choice, device)
    if choice != "auto":
        return choice
    if on_cuda(device):
        return "tensorrt" if importlib.util.find_spec("tensorrt") is not None else "pytorch"
    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"


def runtime_reason(runtime: str, device: str | None) -> str:
    """Why ``auto`` picks ``runtime`` here, in a few words (rtseg doctor)."""
    cuda = on_cuda(device)
    return {
        "openvino": "OpenVINO f32 on any CPU where it is installed (the same ids as PyTorch)",
        "onnxruntime": "OpenVINO is not installed" if not cuda else "for .onnx files on CUDA",
        "tensorrt": "TensorRT imports and a CUDA GPU is present",
        "pytorch": "CUDA GPU present, TensorRT not installed: PyTorch fp16",
    }.get(runtime, "")


def runtime_streams(runtime: str, device: str | None, *, live: bool, sequential: bool = False) -> int:
    """--streams 0 for ``runtime`` (a name in :data:`TABLE`) on ``device``: two streams where they
    pay, one elsewhere.

    On a CPU the pipeline's own threads (decode, colour, encode) share the cores with the network:
    a one-stream network spreads each frame over every core and stalls whenever one of them is
    taken, while two single-threaded streams keep working (benchmarks/results/bench_*.json). A live
    source wants the lowest latency instead (one stream), and so do --sequential runs; runtimes
    without streams in :data:`TABLE` have one."""
    if live or sequential or not TABLE[runtime].streams:
        return 1
    if runtime_device(device).kind not in ("cpu", "auto"):
        return 1
    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def auto_streams(engine: str | Path | None, device: str, *, live: bool, sequential: bool = False,
                 runtime: str | None = None) -> int:
    """--streams 0 by the fixed rule: :func:`runtime_streams` for the runtime
    :func:`resolve_runtime` picks. ``engine`` None is the bundled ``.pt``; ``runtime`` as for
    :func:`resolve_runtime`. ``open_engine(streams=0)`` needs none of this: it decides the streams
    with the runtime it opens (the one ``auto`` measured fastest)."""
    if live or sequential:
        return 1
    return runtime_streams(resolve_runtime(engine, runtime, device), device, live=live, sequential=sequential)


def reduced_default(runtime: str, device: str) -> str | None:
    """The precision below fp32 that ``runtime`` computes by default on ``device`` when asked for
    none (``--precision auto``): bf16 for OpenVINO on a CPU that computes it natively; None where its
    default is fp32 (or it cannot be checked here: fp16 on a GPU)."""
    from rtseg.machine import native_bf16

    row = TABLE.get(runtime)
    if row is not None and row.precision_hint and str(device).strip().lower() in ("cpu", "auto") and native_bf16():
        return "bf16"  # a runtime that takes the precision as a hint computes bf16 where the CPU does
    return None
