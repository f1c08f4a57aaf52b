"""CUDA memory, streams and events for the TensorRT engine and the int8 calibrator: torch's
when torch has CUDA (one context shared with a pipeline that uses torch), else pycuda's, in
the device's primary context (no ``pycuda.autoinit``).

Both rtseg.engines.trt_engine and rtseg.export.tensorrt use it; neither imports the other for it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np

from rtseg.errors import RtsegError, require

__all__ = ["open_cuda"]


# --------------------------------------------------------------------------------------------
# Two ways to hold device memory and a stream in the device's primary CUDA context.

class _TorchBuffer:
    """uint8 device tensor + pinned host mirror, both of one fixed shape."""

    def __init__(self, torch: Any, shape: tuple[int, ...], device: Any):
        self.dev = torch.empty(shape, dtype=torch.uint8, device=device)
        self._host = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        self.host = self._host.numpy()  # shares memory with the pinned tensor
        self.ptr = int(self.dev.data_ptr())

    def to_device(self, n: int) -> None:
        self.dev[:n].copy_(self._host[:n], non_blocking=True)  # async H2D on the current (our) stream

    def to_host(self, n: int) -> None:
        self._host[:n].copy_(self.dev[:n], non_blocking=True)


class _TorchCuda:
    name = "torch"

    def __init__(self, index: int):
        import torch

        self.torch = torch
        self.device = torch.device("cuda", index)
        self.stream = torch.cuda.current_stream(self.device)
        if self.stream.cuda_stream == 0:
            # The legacy default stream makes enqueueV3 add a device-wide synchronisation (TensorRT
            # warns about it): use a torch stream of our own, in the same context.
            self.stream = torch.cuda.Stream(device=self.device)
        self.stream_handle = int(self.stream.cuda_stream)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        # Worker threads start on device 0 with the default stream: select ours explicitly.
        with self.torch.cuda.device(self.device), self.torch.cuda.stream(self.stream):
            yield

    def buffer(self, shape: tuple[int, ...]) -> _TorchBuffer:
        return _TorchBuffer(self.torch, shape, self.device)

    def event(self) -> Any:
        return _Event(self.torch.cuda.Event(enable_timing=True), self.stream, lambda a, b: a.elapsed_time(b))

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        return None  # torch's caching allocator owns the memory


class _Event:
    """A CUDA event recorded on ``stream``; ``elapsed`` gives the ms between two of its kind
    (torch: ``Event.elapsed_time``; pycuda: ``Event.time_till``)."""

    def __init__(self, event: Any, stream: Any, elapsed: Callable[[Any, Any], float]):
        self.event, self.stream, self.elapsed = event, stream, elapsed

    def record(self) -> None:
        self.event.record(self.stream)

    def synchronize(self) -> None:
        self.event.synchronize()

    def ms_until(self, later: "_Event") -> float:
        return float(self.elapsed(self.event, later.event))


class _PyCudaBuffer:
    def __init__(self, cuda: Any, shape: tuple[int, ...], stream: Any):
        self.cuda, self.stream = cuda, stream
        self.host = cuda.pagelocked_empty(shape, np.uint8)  # pinned: async copies need it
        self.dev = cuda.mem_alloc(self.host.nbytes)
        self.ptr = int(self.dev)

    def to_device(self, n: int) -> None:
        self.cuda.memcpy_htod_async(self.dev, self.host[:n], self.stream)

    def to_host(self, n: int) -> None:
        self.cuda.memcpy_dtoh_async(self.host[:n], self.dev, self.stream)


class _PyCuda:
    name = "pycuda"

    def __init__(self, index: int):
        cuda = require("pycuda.driver", extra="trt", feature="running a TensorRT engine without a CUDA build of torch")
        cuda.init()
        if index >= cuda.Device.count():
            raise RtsegError(f"--device cuda:{index}: this machine has {cuda.Device.count()} CUDA GPU(s)")
        self.cuda = cuda
        # The primary context is the one TensorRT's CUDA runtime calls use; a make_context()
        # context (what pycuda.autoinit does) would be a second one.
        self.ctx = cuda.Device(index).retain_primary_context()
        self.buffers: list[_PyCudaBuffer] = []
        with self.activate():
            self.stream = cuda.Stream()
        self.stream_handle = int(self.stream.handle)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        self.ctx.push()  # a context is current per thread: the pipeline calls infer from a worker
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def buffer(self, shape: tuple[int, ...]) -> _PyCudaBuffer:
        buf = _PyCudaBuffer(self.cuda, shape, self.stream)
        self.buffers.append(buf)
        return buf

    def event(self) -> Any:
        return _Event(self.cuda.Event(), self.stream, lambda a, b: a.time_till(b))

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        with self.activate():
            for buf in self.buffers:
                buf.dev.free()
        self.buffers.clear()
        self.ctx.detach()  # releases our hold on the primary context


def open_cuda(index: int) -> Any:
    """Device memory, a stream and events on GPU ``index``: torch's when torch has CUDA, else pycuda's."""
    try:
        import torch

        if torch.cuda.is_available():
            if index >= torch.cuda.device_count():
                raise RtsegError(f"--device cuda:{index}: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
            return _TorchCuda(index)
    except ImportError:
        pass
    return _PyCuda(index)
