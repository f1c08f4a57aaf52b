"""TensorRT engine: runs a ``.plan``/``.engine`` built by ``rtseg export --format engine``.

The plan is DeployModel's graph, so the GPU does everything after the resize: uint8 NHWC BGR
frames go up (3 bytes a pixel), the graph casts, normalises (a 1x1 conv), runs Fast-SCNN and the
argmax, and only uint8 class ids come back (1 byte a pixel). The host resizes frames to the
plan's fixed size (``Engine.preprocess``) and ids back to each frame's size (``postprocess``).

TensorRT 10/11 style: I/O tensors are addressed by name (``num_io_tensors``,
``get_tensor_name``, ``set_tensor_address``; the bindings API is gone) and work is enqueued with
``execute_async_v3`` on a CUDA stream. Device and pinned host buffers are allocated once, at
load. One CUDA context: with a CUDA build of torch the buffers are torch CUDA tensors on torch's
current stream (or a torch stream of its own when that is the legacy default stream), in the
device's primary context, which a pipeline that also uses torch shares; without one, pycuda
retains the same primary context explicitly (no ``pycuda.autoinit``).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rtseg.engines.base import Engine
from rtseg.errors import RtsegError, require
from rtseg.export.tensorrt import PLAN_SUFFIXES, read_sidecar, require_cuda_gpu, require_tensorrt

__all__ = ["TensorRTEngine", "open_cuda", "parse_cuda_device"]

log = logging.getLogger(__name__)


def parse_cuda_device(device: str | None) -> int:
    """'cuda' / 'gpu' / 'auto' / None -> 0, 'cuda:1' -> 1; anything else is a one-line error.

    'cpu' also means GPU 0 (logged at info level): a plan cannot run on the CPU, and 'cpu' is the
    command line's default device, so ``rtseg run --engine x.plan`` works without ``--device``."""
    text = (device or "cuda").strip().lower()
    if text in ("cuda", "gpu", "auto"):
        return 0
    if text == "cpu":
        log.info("a TensorRT plan runs only on an NVIDIA GPU: using cuda:0 for --device cpu")
        return 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise RtsegError(f"a TensorRT engine runs only on an NVIDIA GPU: --device must be cuda or cuda:N, got {device!r}")


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
        return _TorchEvent(self.torch.cuda.Event(enable_timing=True), self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        return None  # torch's caching allocator owns the memory


class _TorchEvent:
    def __init__(self, event: Any, stream: Any):
        self.event, self.stream = event, stream

    def record(self) -> None:
        self.event.record(self.stream)

    def synchronize(self) -> None:
        self.event.synchronize()

    def ms_until(self, later: "_TorchEvent") -> float:
        return float(self.event.elapsed_time(later.event))


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
        return _PyCudaEvent(self.cuda.Event(), self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        with self.activate():
            for buf in self.buffers:
                buf.dev.free()
        self.buffers.clear()
        self.ctx.detach()  # releases our hold on the primary context


class _PyCudaEvent:
    def __init__(self, event: Any, stream: Any):
        self.event, self.stream = event, stream

    def record(self) -> None:
        self.event.record(self.stream)

    def synchronize(self) -> None:
        self.event.synchronize()

    def ms_until(self, later: "_PyCudaEvent") -> float:
        return float(self.event.time_till(later.event))


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


# --------------------------------------------------------------------------------------------

class TensorRTEngine(Engine):
    """A TensorRT plan as an rtseg :class:`Engine`. ``size`` may only restate the plan's own size:
    a plan is built for one input size (frames of any size are resized to it)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, *, device: str | None = "cuda", size: tuple[int, int] | None = None):
        path = Path(path)
        if path.suffix.lower() not in PLAN_SUFFIXES:
            raise RtsegError(f"{path}: a TensorRT engine file ends in {' or '.join(PLAN_SUFFIXES)}")
        if not path.is_file():
            raise RtsegError(f"TensorRT engine not found: {path}")
        info = read_sidecar(path)  # before the GPU checks: a broken file is the first thing to fix
        index = parse_cuda_device(device)
        h, w = info.input_size
        if size is not None and tuple(size) != (h, w):
            raise RtsegError(f"{path.name} was built for {h}x{w} and cannot run at {size[0]}x{size[1]}; "
                             f"build a plan at that size with rtseg export --format engine --size {size[0]}x{size[1]}")
        trt = require_tensorrt("running a TensorRT engine (.plan)")
        require_cuda_gpu("running a TensorRT engine (.plan)")

        self.meta, self.precision = info.meta, info.precision
        self.input_size = (h, w)
        self.device = f"cuda:{index}"
        self.last_infer_ms = float("nan")  # device time of the last infer call (CUDA events)
        self._lock = threading.Lock()  # one execution context and one set of buffers
        self._cuda = open_cuda(index)
        with self._cuda.activate():
            self._load(trt, path, info)

    def _load(self, trt: Any, path: Path, info: Any) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise RtsegError(f"TensorRT {trt.__version__} could not load {path} (built with TensorRT "
                             f"{info.tensorrt_version}); a plan only runs on the TensorRT version and GPU model "
                             "it was built for: rebuild it here with rtseg export --format engine")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RtsegError(f"{path}: expected one input and one output tensor, found {inputs} and {outputs}")
        (self._in_name,), (self._out_name,) = inputs, outputs
        if (self._in_name, self._out_name) != (info.inputs[0].name, info.outputs[0].name):
            raise RtsegError(f"{path} and its sidecar disagree on the tensor names: the plan has {names}")
        in_shape = tuple(self._engine.get_tensor_shape(self._in_name))
        out_shape = tuple(self._engine.get_tensor_shape(self._out_name))
        h, w = self.input_size
        if len(in_shape) != 4 or in_shape[1:] != (h, w, 3) or in_shape[0] < 1 or out_shape != (in_shape[0], h, w):
            raise RtsegError(f"{path}: expected static shapes (N, {h}, {w}, 3) -> (N, {h}, {w}), "
                             f"found {in_shape} -> {out_shape}")
        for name in (self._in_name, self._out_name):
            if np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))) != np.uint8:
                raise RtsegError(f"{path}: tensor {name} is not uint8; rebuild the plan with this rtseg")
        self._batch = int(in_shape[0])
        self._context = self._engine.create_execution_context()
        self._in = self._cuda.buffer(in_shape)  # 3 bytes a pixel up ...
        self._out = self._cuda.buffer(out_shape)  # ... 1 byte a pixel down
        self._context.set_input_shape(self._in_name, in_shape)
        self._context.set_tensor_address(self._in_name, self._in.ptr)
        self._context.set_tensor_address(self._out_name, self._out.ptr)
        self._start, self._end = self._cuda.event(), self._cuda.event()
        log.info("loaded %s: TensorRT %s, %s, batch %d, via %s", path, trt.__version__, self.precision,
                 self._batch, self._cuda.name)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, h, w, 3) BGR -> uint8 (N, h, w) ids, in chunks of the plan's batch size.
        ``last_infer_ms`` becomes the device time of upload + network + download (CUDA events)."""
        self.check_batch(batch)
        n = len(batch)
        out = np.empty((n, *self.input_size), np.uint8)
        total_ms = 0.0
        with self._lock, self._cuda.activate():
            for s in range(0, n, self._batch):
                k = min(self._batch, n - s)  # a short last chunk leaves stale rows whose ids are not read
                self._in.host[:k] = batch[s:s + k]  # into pinned memory so the copy below is async
                self._start.record()
                self._in.to_device(k)
                if not self._context.execute_async_v3(self._cuda.stream_handle):
                    raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
                self._out.to_host(k)
                self._end.record()
                self._end.synchronize()  # waits for the download; the only host-device sync per chunk
                total_ms += self._start.ms_until(self._end)
                out[s:s + k] = self._out.host[:k]
        self.last_infer_ms = total_ms
        return out

    def close(self) -> None:
        """Free the GPU memory now rather than at garbage collection."""
        cuda = getattr(self, "_cuda", None)
        if cuda is None:
            return
        self._context = self._engine = None
        cuda.close()
        self._cuda = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the CUDA driver may already be gone
            pass
