"""GPU and driver checks, below both the TensorRT exporter and the TensorRT engine: is TensorRT
importable, is there an NVIDIA GPU, which GPU does ``--device`` name. Each is cheap and runs
before anything slow. CUDA memory, streams and events: :mod:`rtseg.gpu.cuda`."""
from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any

from rtseg.devices import parse_device
from rtseg.errors import RtsegError, require

__all__ = ["require_tensorrt", "tensorrt_major", "cuda_driver_status", "require_cuda_gpu", "parse_cuda_device",
           "INSTALL_HINT"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'rtseg[trt]' (needs an NVIDIA GPU and its driver)"


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


def parse_cuda_device(device: str | None) -> int:
    """'cuda' / 'gpu' / 'auto' / None -> 0, 'cuda:1' -> 1; anything else is a one-line error.

    'cpu' also means GPU 0 (logged at info level): a plan cannot run on the CPU, and 'cpu' is the
    command line's default device, so ``rtseg run --engine x.plan`` works without ``--device``."""
    try:
        parsed = parse_device(device, default="cuda", others=("GPU",))
    except RtsegError:
        parsed = None
    if parsed is not None and parsed.kind in ("cuda", "auto", "GPU"):
        return parsed.index
    if parsed is not None and parsed.kind == "cpu":
        log.info("a TensorRT plan runs only on an NVIDIA GPU: using cuda:0 for --device cpu")
        return 0
    raise RtsegError(f"a TensorRT engine runs only on an NVIDIA GPU: --device must be cuda or cuda:N, got {device!r}")
