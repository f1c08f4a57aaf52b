"""PyTorch engine over an rtseg checkpoint (``.pt``/``.pth``).

The checkpoint's network runs wrapped in :class:`~rtseg.nets.deploy.DeployModel`, so uint8 NHWC
frames go in and uint8 ids come out; the cast, normalisation and argmax run in the graph.

- CPU: fp32, channels-last weights (the NHWC uint8 input already has channels-last strides
  after DeployModel's permute), ``torch.inference_mode``.
- CUDA: fp16 weights; frames are staged in a pinned host buffer (allocated once per batch shape)
  and copied up with ``non_blocking=True`` (3 bytes a pixel instead of 12 for float input); the
  ids come back through a pinned buffer too (1 byte a pixel), the only sync point per batch.
  The forward runs as a CUDA graph, captured once per batch shape into static device buffers:
  one launch a frame instead of Fast-SCNN's few hundred kernel launches from Python, which
  cost most of the infer stage on a fast GPU and held the GIL the other stages need
  (docs/gpu.md). A shape whose capture fails runs eagerly, with a one-line warning.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rtseg.engines.base import Engine, engine_device
from rtseg.errors import RtsegError
from rtseg.formats.checkpoint import build_from_checkpoint
from rtseg.nets.deploy import DeployModel

__all__ = ["TorchEngine", "resolve_torch_device"]

log = logging.getLogger(__name__)


def resolve_torch_device(device: str | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present, else CPU) -> a torch.device."""
    parsed = engine_device(device).resolve(torch.cuda.is_available)
    if parsed.kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RtsegError(f"--device {device} asks for CUDA, but this torch ({torch.__version__}) sees no CUDA GPU; "
                         "use --device cpu")
    if parsed.index >= torch.cuda.device_count():
        raise RtsegError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device("cuda", parsed.index)


def _precision(precision: str, fp16: bool | None, cuda: bool) -> str:
    """--precision for the PyTorch engine: auto is fp16 on CUDA, fp32 on a CPU; fp16 on a CPU
    (slower than fp32 there) and bf16 on a CPU without native bf16 are one-line errors.
    ``fp16`` (the older keyword) True/False stands for fp16/fp32."""
    from rtseg.engines.runtimes import check_precision
    from rtseg.machine import cpu_model, native_bf16

    precision = check_precision(precision)
    if precision == "auto":
        precision = ("fp16" if fp16 else "fp32") if fp16 is not None else "fp16" if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise RtsegError("--precision fp16 is for CUDA only in the PyTorch engine (CPU fp16 convolutions are slower "
                         "than fp32); on a CPU use fp32 or auto")
    if precision == "bf16" and not cuda and not native_bf16():
        raise RtsegError(f"--precision bf16: this CPU ({cpu_model()}) has no AVX512-BF16 or AMX, so PyTorch would "
                         "emulate bf16, slower than fp32; use fp32 or auto")
    return precision


class TorchEngine(Engine):
    """A checkpoint run by PyTorch. ``precision``: auto (fp16 on CUDA, fp32 on a CPU), fp32, fp16
    (CUDA only: CPU fp16 convolutions are slower than fp32) or bf16 (CUDA, or a CPU with native
    bf16); ``fp16`` True/False is the older way to say fp16/fp32. ``threads`` > 0 sets PyTorch's CPU threads
    (``torch.set_num_threads``: for the whole process); 0 leaves PyTorch's default (one per core)."""

    name = "pytorch"

    def __init__(self, path: str | Path, *, device: str = "cpu", size: tuple[int, int] | None = None,
                 fp16: bool | None = None, threads: int = 0, cuda_graphs: bool = True, precision: str = "auto"):
        if threads > 0:
            torch.set_num_threads(threads)
        self.torch_device = resolve_torch_device(device)
        self.device = str(self.torch_device)
        cuda = self.torch_device.type == "cuda"
        self.precision = _precision(precision, fp16, cuda)
        self.fp16 = self.precision == "fp16"
        net, self.meta = build_from_checkpoint(path)
        self.input_size = tuple(size) if size else tuple(self.meta.input_size)
        model = DeployModel(net, self.meta).eval()
        if self.precision != "fp32":  # also casts the normalisation conv; the uint8 input is cast in-graph
            model = model.to(torch.float16 if self.fp16 else torch.bfloat16)
        self.model = model.to(self.torch_device, memory_format=torch.channels_last)
        # The same network with its scores as a second output (infer_scores, the temporal filter):
        # shares the weights; only the normalisation buffers are its own, cast as the model's.
        self._scores_model = DeployModel(self.model.net, self.meta, scores=True).to(
            self.model.norm_weight.dtype).to(self.torch_device)
        self.has_scores = True
        self.cuda_graphs = cuda and cuda_graphs  # replay the forward as a CUDA graph (one per batch shape)
        self._buffers: dict[tuple[int, ...], _CudaBuffers] = {}  # batch shape -> its buffers (and graph)
        self._lock = threading.Lock()  # the buffers are shared between calls
        log.info("loaded %s", self.describe())

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, h, w, 3) BGR -> uint8 (N, h, w) class ids."""
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise RtsegError(f"infer expects a uint8 (N, H, W, 3) batch, got shape {batch.shape} dtype {batch.dtype}")
        with torch.inference_mode():
            if self.torch_device.type == "cpu":
                return self.model(torch.from_numpy(batch)).numpy()
            return self._infer_cuda(batch)

    def infer_scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, h, w, 3) BGR -> (ids, fp16 scores (N, C, h/8, w/8)). On CUDA this runs eagerly
        (no CUDA graph) and syncs once for both outputs."""
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise RtsegError(f"infer expects a uint8 (N, H, W, 3) batch, got shape {batch.shape} dtype {batch.dtype}")
        with torch.inference_mode():
            if self.torch_device.type == "cpu":
                ids, scores = self._scores_model(torch.from_numpy(batch))
                return ids.numpy(), scores.numpy()
            with self._lock, torch.cuda.device(self.torch_device):
                ids, scores = self._scores_model(torch.from_numpy(batch).to(self.torch_device))
                return ids.cpu().numpy(), scores.cpu().numpy()

    def _infer_cuda(self, batch: np.ndarray) -> np.ndarray:
        shape = batch.shape
        # Worker threads start on device 0: select ours; the lock guards the shared buffers.
        with self._lock, torch.cuda.device(self.torch_device):
            buf = self._buffers.get(shape) or self._prepare(shape)  # once per batch shape, not per frame
            np.copyto(buf.host_in.numpy(), batch)
            buf.dev_in.copy_(buf.host_in, non_blocking=True)
            if buf.graph is not None:
                buf.graph.replay()  # writes buf.dev_out
            else:
                buf.dev_out.copy_(self.model(buf.dev_in))
            buf.host_out.copy_(buf.dev_out, non_blocking=True)
            torch.cuda.current_stream(self.torch_device).synchronize()  # the one sync: wait for the ids
            return buf.host_out.numpy().copy()  # the pinned buffer is reused by the next call

    def _prepare(self, shape: tuple[int, ...]) -> "_CudaBuffers":
        """Pinned host buffers, static device buffers and, with ``cuda_graphs``, the captured graph."""
        dev = self.torch_device
        buf = _CudaBuffers(host_in=torch.empty(shape, dtype=torch.uint8, pin_memory=True),
                           host_out=torch.empty(shape[:3], dtype=torch.uint8, pin_memory=True),
                           dev_in=torch.zeros(shape, dtype=torch.uint8, device=dev),
                           dev_out=torch.empty(shape[:3], dtype=torch.uint8, device=dev))
        if self.cuda_graphs:
            try:
                buf.graph, buf.dev_out = _capture(self.model, buf.dev_in)
            except Exception as exc:  # a driver, model or PyTorch build that cannot capture: run eagerly
                torch.cuda.synchronize(dev)
                log.warning("CUDA graph capture failed for batch %s (%s: %s); running the network eagerly",
                            "x".join(map(str, shape)), type(exc).__name__, str(exc).splitlines()[0][:120])
        self._buffers[shape] = buf
        return buf


@dataclass
class _CudaBuffers:
    host_in: torch.Tensor  # pinned uint8 (N, h, w, 3)
    host_out: torch.Tensor  # pinned uint8 (N, h, w)
    dev_in: torch.Tensor  # the graph's static input
    dev_out: torch.Tensor  # the graph's static output (or where an eager run's ids are copied)
    graph: "torch.cuda.CUDAGraph | None" = None


def _capture(model: torch.nn.Module, static_in: torch.Tensor) -> tuple["torch.cuda.CUDAGraph", torch.Tensor]:
    """Capture ``model(static_in)`` as a CUDA graph. As PyTorch's documentation asks, a few warm-up
    runs go first on a side stream (cuDNN picks its kernels, the allocator fills its pool)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads may use CUDA meanwhile
        static_out = model(static_in)
    graph.replay()  # run once now: a graph that cannot replay fails here, at load, not mid-run
    torch.cuda.current_stream().synchronize()
    return graph, static_out
