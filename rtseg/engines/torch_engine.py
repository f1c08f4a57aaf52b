"""PyTorch engine over an rtseg checkpoint (``.pt``/``.pth``).

The checkpoint's network runs wrapped in :class:`~rtseg.nets.deploy.DeployModel`, so uint8 NHWC
frames go in and uint8 ids come out; the cast, normalisation and argmax run in the graph.

- CPU: fp32, channels-last weights (the NHWC uint8 input already has channels-last strides
  after DeployModel's permute), ``torch.inference_mode``.
- CUDA: fp16 weights; frames are staged in a pinned host buffer (allocated once per batch shape)
  and copied up with ``non_blocking=True`` (3 bytes a pixel instead of 12 for float input); the
  ids come back through a pinned buffer too (1 byte a pixel), the only sync point per batch.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch

from rtseg.checkpoint import build_from_checkpoint
from rtseg.engines.base import Engine
from rtseg.errors import RtsegError
from rtseg.nets.deploy import DeployModel

__all__ = ["TorchEngine", "resolve_torch_device"]

log = logging.getLogger(__name__)


def resolve_torch_device(device: str | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present, else CPU) -> a torch.device."""
    text = (device or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise RtsegError(f"--device {device} asks for CUDA, but this torch ({torch.__version__}) sees no CUDA GPU; "
                             "use --device cpu")
        index = int(text[5:]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise RtsegError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    raise RtsegError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")


class TorchEngine(Engine):
    """A checkpoint run by PyTorch. ``fp16`` defaults to True on CUDA and must be False on CPU
    (CPU fp16 convolutions are slower than fp32). ``threads`` > 0 sets PyTorch's CPU threads
    (``torch.set_num_threads``: for the whole process); 0 leaves PyTorch's default (one per core)."""

    name = "pytorch"

    def __init__(self, path: str | Path, *, device: str = "cpu", size: tuple[int, int] | None = None,
                 fp16: bool | None = None, threads: int = 0):
        if threads > 0:
            torch.set_num_threads(threads)
        self.torch_device = resolve_torch_device(device)
        self.device = str(self.torch_device)
        cuda = self.torch_device.type == "cuda"
        self.fp16 = cuda if fp16 is None else bool(fp16)
        if self.fp16 and not cuda:
            raise RtsegError("fp16 is for CUDA only in the PyTorch engine; on CPU use fp32 (or the OpenVINO/ONNX engines)")
        net, self.meta = build_from_checkpoint(path)
        self.input_size = tuple(size) if size else tuple(self.meta.input_size)
        model = DeployModel(net, self.meta).eval()
        if self.fp16:
            model = model.half()  # also casts the normalisation conv; uint8 input is cast to fp16 in-graph
        self.model = model.to(self.torch_device, memory_format=torch.channels_last)
        self._pinned: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}  # batch shape -> (in, out)
        self._lock = threading.Lock()  # the pinned buffers are shared between calls
        log.info("loaded %s", self.describe())

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, h, w, 3) BGR -> uint8 (N, h, w) class ids."""
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise RtsegError(f"infer expects a uint8 (N, H, W, 3) batch, got shape {batch.shape} dtype {batch.dtype}")
        with torch.inference_mode():
            if self.torch_device.type == "cpu":
                return self.model(torch.from_numpy(batch)).numpy()
            return self._infer_cuda(batch)

    def _infer_cuda(self, batch: np.ndarray) -> np.ndarray:
        shape = batch.shape
        # Worker threads start on device 0: select ours; the lock guards the shared pinned buffers.
        with self._lock, torch.cuda.device(self.torch_device):
            if shape not in self._pinned:  # once per batch shape, not per frame
                self._pinned[shape] = (torch.empty(shape, dtype=torch.uint8, pin_memory=True),
                                       torch.empty(shape[:3], dtype=torch.uint8, pin_memory=True))
            host_in, host_out = self._pinned[shape]
            np.copyto(host_in.numpy(), batch)
            ids = self.model(host_in.to(self.torch_device, non_blocking=True))
            host_out.copy_(ids, non_blocking=True)
            torch.cuda.current_stream(self.torch_device).synchronize()  # the one sync: wait for the ids
            return host_out.numpy().copy()  # the pinned buffer is reused by the next call
