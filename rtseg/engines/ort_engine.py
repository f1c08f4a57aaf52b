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
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rtseg.engines.base import ONNX_NO_SCORES, Engine, PerThread, check_streams, engine_device
from rtseg.engines.cache import cache_root
from rtseg.engines.host_ids import MAX_WORK, SpeckleWatch, ids_from_scores
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


class _Sessions:
    """One session per stream (a session is safe to share, but its one thread pool is not shared
    well), each calling thread keeping one; ``low``: the name of the scores output the host makes
    the ids from (None: the graph's own ids)."""

    def __init__(self, sessions: list[Any], low: str | None = None):
        self.sessions, self.low = sessions, low
        self.per_thread = PerThread(lambda k: sessions[k % len(sessions)])


class OrtEngine(Engine):
    """An rtseg ONNX file run by ONNX Runtime. ``threads``: intra-op threads in all (0 = one per
    core). ``streams``: sessions run at once from different threads, each with threads/streams
    intra-op threads (see Engine.streams). ``host_ids``: on a CPU, where the graph ends in a bilinear
    Resize of its scores and an ArgMax, run it without them and make the ids on the host
    (:mod:`rtseg.engines.host_ids`, as :class:`~rtseg.engines.openvino_engine.OpenVINOEngine` does)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, *, device: str = "cpu", size: tuple[int, int] | None = None,
                 threads: int = 0, streams: int = 1, precision: str = "auto", host_ids: bool = True):
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
        cut = _cut(path) if host_ids and self.device == "cpu" else None
        self._open = lambda source: [ort.InferenceSession(source, sess_options=opts, providers=providers)
                                     for _ in range(self.streams)]
        try:
            self._graph = _Sessions(self._open(cut[0]), cut[1]) if cut is not None else _Sessions(self._open(str(path)))
        except load_errors as exc:
            raise RtsegError(f"ONNX Runtime cannot load {path} ({str(exc).splitlines()[0][:160]})") from None
        self._whole: Path | None = path if cut is not None else None  # opened if the host's ids do not pay
        self._speckle, self._tail, self._tail_lock = SpeckleWatch(), None, threading.Lock()
        self.providers = self.session.get_providers()
        if cut is not None:
            log.info("%s: class ids made on the host from the network's scores (its own Resize and ArgMax skipped: "
                     "rtseg.engines.host_ids)", path.name)

        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.type != "tensor(uint8)":
            raise RtsegError(f"{path}: expected a uint8 (N, H, W, 3) input, found {inp.type} {inp.shape}")
        self._input_name = inp.name
        self._output_name = "ids" if cut is not None else self.session.get_outputs()[0].name  # a cut file's was ids
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

    @property
    def ids_on_host(self) -> bool:
        return self._graph.low is not None

    @property
    def session(self):
        """The first stream's session (the cut graph's while the host makes the ids)."""
        return self._graph.sessions[0]

    @property
    def sessions(self) -> list[Any]:
        return self._graph.sessions

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, h, w, 3) BGR -> uint8 (N, h, w) class ids."""
        return self._ids_and(batch, [])[0]

    def infer_scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, h, w, 3) BGR -> (ids, fp16 scores (N, C, h/8, w/8)): the graph's two outputs."""
        if not self.has_scores:
            raise RtsegError(self.no_scores_reason())
        ids, scores = self._ids_and(batch, ["scores"])
        return ids, scores

    def _ids_and(self, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """The ids and the outputs ``names`` for ``batch``: the graph's own ids, or made on the host
        from its scores before the Resize, each frame apart."""
        graph = self._graph  # for the whole call: another thread may swap in the whole graph meanwhile
        if graph.low is None:
            return self._run(graph, batch, [self._output_name, *names])
        low, *rest = self._run(graph, batch, [graph.low, *names])
        h, w = batch.shape[1:3]
        if len(low) and (h % low.shape[2] or w % low.shape[3]):  # a size the scores do not divide: the graph's way
            self._give_up(f"the scores ({low.shape[2]}x{low.shape[3]}) do not divide {h}x{w}")
            return self._run(self._graph, batch, [self._output_name, *names])
        scale = (h // low.shape[2], w // low.shape[3]) if len(low) else (1, 1)
        ids = np.empty(batch.shape[:3], np.uint8)
        for i in range(len(batch)):
            speckled = ids_from_scores(low[i], scale, ids[i], max_work=MAX_WORK) is None
            if speckled:
                ids[i] = self._tail_ids(low[i], scale)
            if self._speckle.count(speckled):
                self._give_up("the class maps are too speckled for ids made on the host (%d of the last %d frames)"
                              % self._speckle.last)
        return [ids, *rest]

    def _tail_ids(self, low: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
        """One frame's ids by the cut-off tail alone (an ONNX Runtime session on one thread, made on the
        first frame that needs it)."""
        import onnxruntime as ort

        from rtseg.engines.onnx_tail import tail_model

        with self._tail_lock:
            if self._tail is None:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
                self._tail = ort.InferenceSession(tail_model(low.shape[0], low.shape[1:], scale), sess_options=opts,
                                                  providers=["CPUExecutionProvider"])
        return self._tail.run(None, {"scores": np.ascontiguousarray(low[None], np.float32)})[0][0]

    def _give_up(self, why: str) -> None:
        """The whole graph from now on: its sessions opened now, in the calling thread; a stream that
        gives up meanwhile waits for them rather than running the cut graph for ids it cannot make."""
        with self._tail_lock:
            path, self._whole = self._whole, None
            if path is None:
                return
            log.info("%s: the network's own Resize and ArgMax from now on", why)
            try:
                self._graph = _Sessions(self._open(str(path)))
            except Exception as exc:  # noqa: BLE001 - ORT's load errors derive from Exception: one line
                raise RtsegError(f"ONNX Runtime cannot load {path} ({str(exc).splitlines()[0][:160]})") from None

    def no_scores_reason(self) -> str:
        return ONNX_NO_SCORES

    def _run(self, graph: _Sessions, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """The outputs ``names`` for ``batch`` (the scores output costs one Cast of the 1/8 logits)."""
        self.check_batch(batch)
        batch = np.ascontiguousarray(batch)
        session = graph.per_thread.get()
        if self.batch is None or len(batch) == self.batch:
            return session.run(names, {self._input_name: batch})
        # A static-batch file: one call per chunk of its batch size (1 for a default export).
        k = self.batch
        if len(batch) % k:
            raise RtsegError(f"this ONNX file takes batches of {k}; got {len(batch)} frames (export with --dynamic)")
        chunks = [session.run(names, {self._input_name: batch[i:i + k]}) for i in range(0, len(batch), k)]
        return [np.concatenate(parts) for parts in zip(*chunks)]


def _cut(path: Path) -> tuple[bytes, str] | None:
    """``path``'s graph without its Resize + ArgMax tail, and the name of the scores it then gives
    (rtseg.engines.onnx_tail); None where it has no such tail or is not readable as ONNX here (the
    session then reads the file itself, and says what is wrong with it)."""
    try:
        import onnx

        from rtseg.engines.onnx_tail import cut_tail

        return cut_tail(onnx.load(str(path)))
    except Exception as exc:  # noqa: BLE001 - any failure leaves the graph whole, as before
        log.debug("%s: the graph stays whole (%s)", path.name, exc)
        return None
