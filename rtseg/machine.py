"""This machine, as the figures it produces depend on it: the CPU's model and the instruction sets
that change which runtime and precision is fastest (AVX2, AVX-512, AVX512-BF16, AMX), the cores
this process may use, the GPUs, and the versions of the libraries that run the networks.

:func:`describe` is what every benchmark JSON and ``rtseg bench --json`` records (``"machine"``);
:func:`machine_key` is the part of it that keys ``--runtime auto``'s cached choice
(:mod:`rtseg.engines.probe`): a new CPU, GPU or library version measures again.
Nothing here imports a heavy library: versions come from the installed packages' metadata.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["FLAGS", "LIBRARIES", "cpu_model", "cpu_flags", "native_bf16", "gpus", "library_versions", "describe",
           "machine_key"]

# The CPU flags (Linux /proc/cpuinfo names) that change what runs fastest here.
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
# The packages whose versions a measured figure depends on (distribution names).
LIBRARIES = ("rtseg", "torch", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "onnx", "numpy",
             "opencv-python", "opencv-python-headless")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} off Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """'AMD EPYC 7B13', 'Intel(R) Xeon(R) Platinum 8480+', ... (the platform's name off Linux)."""
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Those of :data:`FLAGS` this CPU has, in that order."""
    have = set(_cpuinfo().get("flags", "").split())
    return [f for f in FLAGS if f in have]


def native_bf16() -> bool:
    """True when the CPU computes bfloat16 itself (AVX512-BF16 or AMX), so bf16 runs faster than f32."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


@functools.lru_cache(maxsize=2)
def gpus(*, import_torch: bool = True) -> tuple[str, ...]:
    """The CUDA GPUs torch sees ('NVIDIA H200', ...); () without CUDA or torch. ``import_torch``
    False: the NVIDIA driver's own list (/proc/driver/nvidia/gpus) instead, which needs no torch:
    importing it costs a run on ONNX Runtime or OpenVINO 1.5 s before its first frame, for a name."""
    if not import_torch:
        names = []
        for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
            try:
                model = next((ln for ln in info.read_text().splitlines() if ln.startswith("Model:")), "")
            except OSError:
                continue
            names.append(model.partition(":")[2].strip())
        return tuple(names)
    try:
        import torch
    except ImportError:
        return ()
    if not torch.cuda.is_available():
        return ()
    return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def library_versions() -> dict[str, str]:
    """{distribution: version} for the installed ones of :data:`LIBRARIES`."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def describe(*, import_torch: bool = True) -> dict[str, Any]:
    """The ``"machine"`` record of a benchmark JSON: cpu, flags, cores, gpus, libraries, platform
    (``import_torch``: see :func:`gpus`)."""
    return {"cpu": cpu_model(), "flags": cpu_flags(), "cores": len(os.sched_getaffinity(0)),
            "gpus": list(gpus(import_torch=import_torch)), "libraries": library_versions(),
            "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
            "python": platform.python_version()}


def machine_key() -> str:
    """A short hash of what makes a measurement on this machine differ from one on another:
    :func:`describe` less the kernel and Python's patch level (the GPUs by the driver's list, never
    by importing torch: a run that needs no torch keys its cached choices without it)."""
    record = describe(import_torch=False)
    record.pop("platform")
    record.pop("python")
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def since_process_start() -> float | None:
    """Seconds since this process started (Linux: /proc; elsewhere None), what a user waits for
    from typing the command: the interpreter's start and every import included."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time, clock ticks after boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return round(uptime - started / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None
