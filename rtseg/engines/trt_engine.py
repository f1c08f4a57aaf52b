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

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rtseg.engines.base import Engine
from rtseg.errors import RtsegError
from rtseg.formats import suffixes_of
from rtseg.formats.plan import PlanInfo, read_sidecar
from rtseg.gpu import parse_cuda_device, require_cuda_gpu, require_tensorrt
from rtseg.gpu.cuda import open_cuda

__all__ = ["TensorRTEngine", "open_cuda", "parse_cuda_device"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------

class TensorRTEngine(Engine):
    """A TensorRT plan as an rtseg :class:`Engine`. ``size`` may only restate the plan's own size:
    a plan is built for one input size (frames of any size are resized to it)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, *, device: str | None = "cuda", size: tuple[int, int] | None = None,
                 precision: str = "auto"):
        path = Path(path)
        if path.suffix.lower() not in suffixes_of("tensorrt"):
            raise RtsegError(f"{path}: a TensorRT engine file ends in {' or '.join(suffixes_of('tensorrt'))}")
        if not path.is_file():
            raise RtsegError(f"TensorRT engine not found: {path}")
        info = read_sidecar(path)  # before the GPU checks: a broken file is the first thing to fix
        from rtseg.engines.runtimes import check_precision

        if check_precision(precision) not in ("auto", info.precision):
            raise RtsegError(f"--precision {precision}: {path.name} was built {info.precision}; a plan keeps the "
                             f"precision it was built with (give the .pt, or rtseg export --format engine "
                             f"--precision {precision})")
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
        self.last_infer_ms = float("nan")  # measured by CUDA events from the first infer call on
        self._lock = threading.Lock()  # one execution context and one set of buffers
        self._cuda = open_cuda(index)
        with self._cuda.activate():
            self._load(trt, path, info)

    def _load(self, trt: Any, path: Path, info: PlanInfo) -> None:
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
