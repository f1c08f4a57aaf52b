"""ONNX Runtime engine over an rtseg ONNX file (``rtseg export --format onnx``).

The graph takes uint8 (N, H, W, 3) BGR and returns uint8 (N, H, W) ids, so a call moves 4 bytes
a pixel. Providers: CPU always; with ``device="cuda[:N]"`` the TensorRT and CUDA execution
providers first, when this onnxruntime build has them (onnxruntime-gpu).

Sizes: a dynamic-size file runs at any ``size`` (default: its metadata's input size). A file
exported at a fixed size runs at that size only; asking for another one logs a warning and
frames are resized to the file's size (the ids still come back at each frame's own size), so a
``--size`` meant for another engine never stops a run. Export with ``--dynamic`` to choose freely.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from rtseg.engines.base import ONNX_NO_SCORES, Engine, PerThread, check_streams, engine_device
from rtseg.engines.cache import cache_root
from rtseg.errors import RtsegError
from rtseg.formats import artifact_meta

__all__ = ["OrtEngine", "ort_providers", "check_export_precision"]

log = logging.getLogger(__name__)


def ort_providers(device: str | None, available: list[str]) -> tuple[str, list[Any]]:
    """(resolved device, provider list) for 'cpu', 'cuda', 'cuda:N' or 'auto'."""
    has_cuda = "CUDAExecutionProvider" in available
    parsed = engine_device(device).resolve(lambda: has_cuda)
    if parsed.kind == "cpu":
        return "cpu", ["CPUExecutionProvider"]
    if not has_cuda:
        raise RtsegError(f"--device {device} asks for CUDA, but this onnxruntime has no CUDA provider "
                         f"(it has {', '.join(available)}); install onnxruntime-gpu or use --device cpu")
    index = parsed.index
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        # ORT builds TensorRT engines for the graph on first run; cache them between runs.
        cache = cache_root() / "ort_trt"
        providers.append(("TensorrtExecutionProvider", {"device_id": index, "trt_fp16_enable": True,
                                                         "trt_engine_cache_enable": True,
                                                         "trt_engine_cache_path": str(cache)}))
    providers.append(("CUDAExecutionProvider", {"device_id": index}))
    providers.append("CPUExecutionProvider")
    return f"cuda:{index}", providers


def _precision(asked: str, file_precision: str, device: str) -> str:
    """ONNX Runtime computes in the file's own precision (fp32 on a CPU: its fp16 kernels there are
    slower than fp32 and few): another --precision is a one-line error saying what does it."""
    from rtseg.engines.runtimes import check_precision

    asked = check_precision(asked)
    if device == "cpu" and asked not in ("auto", "fp32"):
        raise RtsegError(f"--precision {asked}: ONNX Runtime computes fp32 on the CPU; use fp32, or --runtime "
                         "openvino for bf16 where the CPU has it")
    if asked in ("auto", file_precision):
        return file_precision
    raise RtsegError(f"--precision {asked}: this ONNX file is {file_precision}; ONNX Runtime runs a file's own "
                     f"precision (rtseg export --precision {asked}, or give the .pt and rtseg exports it)")


def check_export_precision(precision: str, cuda: bool) -> None:
    """Before a ``.pt`` is exported for ONNX Runtime (its row's ``export_check`` in
    :data:`rtseg.engines.runtimes.TABLE`): a precision it would refuse to run the export at is the
    one-line error now, not after an export made for nothing."""
    _precision(precision, precision if precision != "auto" else "fp32", "cuda" if cuda else "cpu")


class OrtEngine(Engine):
    """An rtseg ONNX file run by ONNX Runtime. ``threads``: intra-op threads in all (0 = one per
    core). ``streams``: sessions run at once from different threads, each with threads/streams
    intra-op threads (see Engine.streams)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, *, device: str = "cpu", size: tuple[int, int] | None = None,
                 threads: int = 0, streams: int = 1, precision: str = "auto"):
        import onnxruntime as ort

        path = Path(path)
        self.meta = artifact_meta(path, "onnx")  # also: missing file, not ONNX, not rtseg -> one line
        self.device, providers = ort_providers(device, ort.get_available_providers())
        self.precision = _precision(precision, self.meta.extra.get("export", {}).get("precision") or "fp32",
                                    self.device)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # fusions, layout for MLAS
        self.streams = check_streams(streams)
        total = threads if threads > 0 else len(os.sched_getaffinity(0))
        opts.intra_op_num_threads = max(1, total // self.streams)
        opts.inter_op_num_threads = 1  # the graph is one chain: parallelism is inside the ops
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        # ORT's errors derive from Exception directly; these are the ones a bad or foreign file raises.
        load_errors = (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf, ort_errors.NotImplemented,
                       ort_errors.InvalidArgument, RuntimeError, ValueError)
        try:
            # A session is safe to share, but its one thread pool is not shared well: a session per stream.
            sessions = [ort.InferenceSession(str(path), sess_options=opts, providers=providers)
                        for _ in range(self.streams)]
        except load_errors as exc:
            raise RtsegError(f"ONNX Runtime cannot load {path} ({str(exc).splitlines()[0][:160]})") from None
        self.session, self.sessions = sessions[0], sessions
        self._session = PerThread(lambda k: sessions[k % len(sessions)])
        self.providers = self.session.get_providers()

        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.type != "tensor(uint8)":
            raise RtsegError(f"{path}: expected a uint8 (N, H, W, 3) input, found {inp.type} {inp.shape}")
        self._input_name = inp.name
        self._output_name = self.session.get_outputs()[0].name
        self.has_scores = "scores" in [o.name for o in self.session.get_outputs()]  # rtseg exports since issue 26
        n, h, w = inp.shape[:3]
        self.batch = n if isinstance(n, int) else None  # None: any batch size in one call
        self.fixed_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        if self.fixed_size is not None:
            if size is not None and tuple(size) != self.fixed_size:
                log.warning("%s was exported at %dx%d and cannot run at %dx%d: frames are resized to %dx%d "
                            "(export with --dynamic to choose the size)", path.name, *self.fixed_size, *size,
                            *self.fixed_size)
            self.input_size = self.fixed_size
        else:
            self.input_size = tuple(size) if size else tuple(self.meta.input_size)
        log.info("loaded %s (providers %s)", self.describe(), ", ".join(self.providers))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, h, w, 3) BGR -> uint8 (N, h, w) class ids."""
        return self._run(batch, [self._output_name])[0]

    def infer_scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, h, w, 3) BGR -> (ids, fp16 scores (N, C, h/8, w/8)): the graph's two outputs."""
        if not self.has_scores:
            raise RtsegError(self.no_scores_reason())
        ids, scores = self._run(batch, [self._output_name, "scores"])
        return ids, scores

    def no_scores_reason(self) -> str:
        return ONNX_NO_SCORES

    def _run(self, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """The outputs ``names`` for ``batch`` (the scores output costs one Cast of the 1/8 logits)."""
        self.check_batch(batch)
        batch = np.ascontiguousarray(batch)
        session = self._session.get()
        if self.batch is None or len(batch) == self.batch:
            return session.run(names, {self._input_name: batch})
        # A static-batch file: one call per chunk of its batch size (1 for a default export).
        k = self.batch
        if len(batch) % k:
            raise RtsegError(f"this ONNX file takes batches of {k}; got {len(batch)} frames (export with --dynamic)")
        chunks = [session.run(names, {self._input_name: batch[i:i + k]}) for i in range(0, len(batch), k)]
        return [np.concatenate(parts) for parts in zip(*chunks)]
