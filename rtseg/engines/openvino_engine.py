"""OpenVINO engine over an rtseg ONNX file (``rtseg export --format onnx``), for Intel CPUs.

OpenVINO reads the ``.onnx`` file directly (no IR conversion step) and compiles it for the
CPU with oneDNN kernels. On a CPU with AMX or AVX512-BF16 it runs the network in bfloat16
(``INFERENCE_PRECISION_HINT``): several times faster than its f32, with the same CamVid val mIoU
(figures: benchmarks/cpu_engines.py and its results).
The graph is the same as for ONNX Runtime: uint8 (N, H, W, 3) BGR in, uint8 (N, H, W) ids out.

Sizes: a dynamic-size file is reshaped to the requested ``size`` (default: its metadata's
input size) before compiling, so the CPU plugin plans static buffers. A fixed-size file runs
at its own size; asking for another logs a warning and frames are resized to the file's size,
as the ONNX Runtime engine does.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

import numpy as np

from rtseg.devices import parse_device
from rtseg.engines.base import ONNX_NO_SCORES, Engine, PerThread, check_streams
from rtseg.engines.host_ids import MAX_WORK, SpeckleWatch, ids_from_scores, openvino_tail, openvino_tail_model
from rtseg.errors import RtsegError, require
from rtseg.formats import artifact_meta
from rtseg.signals import keep_signal_stack

__all__ = ["OpenVINOEngine", "PRECISIONS", "HINTS", "cpu_has_bf16", "new_core"]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32", "fp16")  # auto: bf16 where the CPU computes it natively, else f32
_HINT = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # --precision -> INFERENCE_PRECISION_HINT
HINTS = ("latency", "throughput")  # OpenVINO's PERFORMANCE_HINT: one stream vs several in parallel


def _ov():
    return require("openvino", extra="openvino", feature="the OpenVINO engine")


def new_core():
    """An OpenVINO Core with its device plugins loaded, the calling thread's signal stack kept as
    it was (OpenVINO's CPU plugin would leave one of its own, which later Ctrl-C or SIGTERM can
    crash on: rtseg.signals.keep_signal_stack)."""
    with keep_signal_stack():
        core = _ov().Core()
        core.available_devices  # loads the plugins now, inside the block
    return core


def cpu_has_bf16(core=None) -> bool:
    """True when OpenVINO's CPU plugin reports native bfloat16 (AVX512-BF16 or AMX)."""
    core = core or new_core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _precision(precision: str, target: str, core) -> str:
    """--precision as OpenVINO's hint for ``target``: auto is bf16 where the CPU computes it
    natively, else f32; bf16 or fp16 the device does not compute natively is a one-line error
    (OpenVINO would run them emulated, slower than f32, or quietly as f32)."""
    from rtseg.engines.runtimes import check_precision

    precision = check_precision(precision)
    caps = core.get_property(target, "OPTIMIZATION_CAPABILITIES") if target in ("CPU", "GPU") else []
    if precision == "auto":
        return "bf16" if target == "CPU" and "BF16" in caps else "f32"
    if precision != "fp32" and target == "CPU" and precision.upper() not in caps:
        from rtseg.machine import cpu_model

        need = "AVX512-BF16 or AMX" if precision == "bf16" else "AVX512-FP16 or ARM fp16"
        raise RtsegError(f"--precision {precision}: OpenVINO cannot compute {precision} on this CPU ({cpu_model()}; "
                         f"it reports {', '.join(caps)}; {precision} needs {need}); use fp32 or auto")
    return _HINT[precision]


def _ov_device(device: str | None, available: list[str]) -> str:
    try:
        parsed = parse_device(device, default="cpu", others=available)  # OpenVINO's own names, e.g. GPU, NPU
    except RtsegError:
        parsed = None
    if parsed is not None and parsed.kind in ("cpu", "auto"):
        return "CPU"
    if parsed is not None and parsed.kind != "cuda":
        return parsed.kind
    raise RtsegError(f"unknown device {device!r} for OpenVINO; use cpu or one of {', '.join(available)}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise RtsegError(f"unknown {name} {value!r} for OpenVINO; use one of {', '.join(allowed)}")
    return text


class _Graph:
    """A compiled model and how to read it: ``ids_out`` the index of its ids output, or None when
    the host makes the ids from output 0, the scores at 1/``scale``; ``scores_out`` that of its
    scores (None: none). Its infer requests, one per calling thread (one must not be used by two
    threads at once)."""

    def __init__(self, compiled, ids_out: int | None, scores_out: int | None, scale: tuple[int, int] | None = None):
        self.compiled, self.ids_out, self.scores_out, self.scale = compiled, ids_out, scores_out, scale
        self.requests = PerThread(lambda k: compiled.create_infer_request())
        self.queue = None  # AsyncInferQueue, made on the first multi-frame batch in throughput mode


class OpenVINOEngine(Engine):
    """An rtseg ONNX file compiled by OpenVINO.

    ``precision``: ``auto`` (bf16 when the CPU has it natively, else f32), ``fp32`` (also ``f32``),
    ``bf16`` or ``fp16`` (the last two where the device computes them natively).
    ``hint``: ``latency`` (one frame as fast as possible) or ``throughput`` (several frames of a
    batch in parallel streams). ``threads``: inference threads in all (0 = one per core).
    ``streams``: frames inferred at once from different threads, each on threads/streams of the
    threads (see Engine.streams); more than one implies the throughput hint.
    """

    name = "openvino"

    def __init__(self, path: str | Path, *, device: str = "cpu", size: tuple[int, int] | None = None,
                 precision: str = "auto", hint: str = "latency", threads: int = 0, streams: int = 1,
                 host_ids: bool = True):
        ov = _ov()
        path = Path(path)
        self.meta = artifact_meta(path)  # also: missing file, not ONNX or IR, not rtseg -> one line
        hint = _choice("hint", hint, HINTS)
        self.streams = check_streams(streams)
        if self.streams > 1:
            hint = "throughput"
        core = new_core()
        target = _ov_device(device, core.available_devices)
        self.device = target.lower()
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise RtsegError(f"OpenVINO cannot read {path} ({str(exc).strip().splitlines()[0][:160]})") from None

        inp = model.inputs[0]
        shape = inp.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4 or inp.get_element_type() != ov.Type.u8:
            raise RtsegError(f"{path}: expected a uint8 (N, H, W, 3) input, found {inp.get_element_type()} {shape}")
        n, h, w = shape[0], shape[1], shape[2]
        if h.is_static and w.is_static:
            self.input_size = (h.get_length(), w.get_length())
            if size is not None and tuple(size) != self.input_size:
                log.warning("%s was exported at %dx%d and cannot run at %dx%d: frames are resized to %dx%d "
                            "(export with --dynamic to choose the size)", path.name, *self.input_size, *size,
                            *self.input_size)
        else:
            self.input_size = tuple(size) if size else tuple(self.meta.input_size)
        # Batch 1, static: the CPU plugin plans its buffers once. Bigger batches run frame by frame
        # (latency) or spread over parallel infer requests (throughput): same work, no re-planning.
        if not (n.is_static and n.get_length() == 1 and h.is_static and w.is_static):
            model.reshape({inp.get_any_name(): ov.PartialShape([1, *self.input_size, 3])})

        names = [out.get_names() for out in model.outputs]  # each output's tensor names
        scores_out = next((i for i, n in enumerate(names) if "scores" in n), None)
        self.has_scores = scores_out is not None  # rtseg exports since issue 26
        whole = (model, next((i for i, n in enumerate(names) if "ids" in n), 0), scores_out)
        tail = openvino_tail(model) if host_ids and target == "CPU" else None
        self._whole = None  # the uncut model, while the host's ids may still turn out the slower way
        if tail is not None:  # cut before the graph's Resize and ArgMax; its scores output kept as it was
            kept = [tail[0]] + ([model.output(scores_out)] if self.has_scores else [])
            model = ov.Model(kept, model.get_parameters(), model.get_friendly_name())
            self._whole = whole
            log.info("%s: class ids made on the host from the network's scores at 1/%d x 1/%d (its own Resize and "
                     "ArgMax skipped: rtseg.engines.host_ids)", path.name, *tail[1])

        ov_precision = _precision(precision, target, core)
        self.precision = {"f32": "fp32", "f16": "fp16"}.get(ov_precision, ov_precision)  # --precision's names
        config = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_PRECISION_HINT": ov_precision}
        if target == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads if threads > 0 else len(os.sched_getaffinity(0))
        if self.streams > 1:
            config["NUM_STREAMS"] = self.streams
            if target == "CPU" and "ENABLE_CPU_PINNING" in core.get_property("CPU", "SUPPORTED_PROPERTIES"):
                # Several streams run beside the pipeline's decode, colour and encode threads: a
                # stream pinned to a core waits while another thread holds that core, even when
                # another core is free (measured faster unpinned; one stream was faster pinned).
                config["ENABLE_CPU_PINNING"] = False
        try:
            compiled = core.compile_model(model, target, config)
        except RuntimeError as exc:
            raise RtsegError(f"OpenVINO cannot compile {path} for {target} "
                             f"({str(exc).strip().splitlines()[0][:160]})") from None
        self.hint = hint
        if self.streams > 1:  # OpenVINO makes no more streams than it has cores for: say what it made
            self.streams = max(1, int(compiled.get_property("NUM_STREAMS")))
        self._graph = (_Graph(compiled, None, 1 if self.has_scores else None, tail[1]) if tail is not None
                       else _Graph(compiled, *whole[1:]))
        self._speckle = SpeckleWatch()  # whether the host's ids pay, or the whole graph should run
        self._binding = threading.Lock()  # around OpenVINO's Python tensor handling (see infer)
        self._ov_tensor = _ov().Tensor
        self._tail, self._tail_lock = None, threading.Lock()  # the cut-off tail, compiled when first needed
        self._core, self._target, self._config = core, target, config
        log.info("loaded %s (%s hint)", self.describe(), hint)

    @property
    def in_flight(self) -> int:
        """Throughput: one frame more than the streams, so that a stream that finishes a frame finds
        the next one already queued. Without it the stream waits while a Python thread takes the
        ids out and hands it the next frame, and that thread may first wait for the GIL behind the
        pipeline's other stages (on 2 cores, 2 streams: about 5% more frames a second with 3 in
        flight; docs/usage.md). Latency: one."""
        return self.streams + 1 if self.hint == "throughput" else 1

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, h, w, 3) BGR -> uint8 (N, h, w) class ids."""
        self.check_batch(batch)
        out = np.empty(batch.shape[:3], np.uint8)
        if len(batch) > 1 and self.hint == "throughput":
            self._infer_parallel(batch, out)
            return out
        graph = self._graph  # for the whole call: another thread may swap in the uncut model meanwhile
        request = graph.requests.get()
        for i in range(len(batch)):
            # Two streams' workers inside OpenVINO's Python tensor handling at once now and then
            # hung the process (about 1 run in 10 with 2 streams; both stacks in openvino's
            # data_dispatcher). Only that handling is serialised; the inference itself, which
            # releases the GIL, still runs in parallel.
            with self._binding:
                request.set_input_tensor(self._ov_tensor(np.ascontiguousarray(batch[i:i + 1])))
            request.infer()
            self._take_ids(graph, request, out[i])
        return out

    @property
    def ids_on_host(self) -> bool:
        return self._graph.scale is not None

    @property
    def compiled(self):
        """The compiled model that runs now (the cut one while the host makes the ids)."""
        return self._graph.compiled

    def _take_ids(self, graph: "_Graph", request, dst: np.ndarray, *, locked: bool = True) -> None:
        """The finished ``request``'s ids into ``dst`` (h, w): copied from the graph's ids output (the
        request's buffers are reused by its next call), or made from its scores on the host
        (:mod:`rtseg.engines.host_ids`) outside the lock, so that two streams' workers make theirs
        at once; by the cut-off tail where the map is too speckled for that to pay."""
        with self._binding if locked else contextlib.nullcontext():
            if graph.scale is None:
                dst[...] = request.get_output_tensor(graph.ids_out).data[0]
                return
            low = request.get_output_tensor(0).data[0].copy()  # (C, h/sy, w/sx) float32, a few hundred KB
        speckled = ids_from_scores(low, graph.scale, dst, max_work=MAX_WORK) is None
        if speckled:
            self._tail_ids(low, dst, graph.scale)
        self._count(speckled)

    def _count(self, speckled: bool) -> None:
        """Count a frame whose ids the host made; where most of a window's were too speckled, compile
        the uncut model and run it from then on (:class:`~rtseg.engines.host_ids.SpeckleWatch`)."""
        if not self._speckle.count(speckled):
            return
        swap, self._whole = self._whole, None
        if swap is None:
            return
        log.info("the class maps are too speckled for ids made on the host (%d of the last %d frames): the "
                 "network's own Resize and ArgMax from now on", *self._speckle.last)

        def compile_whole() -> None:  # beside the frames, which go on meanwhile as they were
            model, ids_out, scores_out = swap
            try:
                compiled = self._core.compile_model(model, self._target, self._config)
            except RuntimeError as exc:  # the cut model runs on, as it did: slower on such maps, not wrong
                log.warning("OpenVINO could not compile the whole model (%s); the ids stay made on the host",
                            str(exc).strip().splitlines()[0][:160])
                return
            self._graph = _Graph(compiled, ids_out, scores_out)

        threading.Thread(target=compile_whole, name="openvino-compile").start()  # not a daemon: exit waits for it

    def _tail_ids(self, low: np.ndarray, dst: np.ndarray, scale: tuple[int, int]) -> None:
        """The ids of one frame's scores ``low`` (C, h, w) by the tail the graph was cut before, run by
        OpenVINO on one thread (compiled on the first frame that needs it)."""
        if self._tail is None:
            with self._tail_lock:
                if self._tail is None:
                    config = {**self._config, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1}
                    config.pop("NUM_STREAMS", None)
                    tail = self._core.compile_model(openvino_tail_model(low.shape[0], low.shape[1:], scale),
                                                    self._target, config)
                    self._tail = PerThread(lambda k: tail.create_infer_request())
        request = self._tail.get()
        with self._binding:
            request.set_input_tensor(self._ov_tensor(low[None]))
        request.infer()
        with self._binding:
            dst[...] = request.get_output_tensor(0).data[0]

    def infer_scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, h, w, 3) BGR -> (ids, fp16 scores (N, C, h/8, w/8)), frame by frame."""
        if not self.has_scores:
            raise RtsegError(self.no_scores_reason())
        self.check_batch(batch)
        ids, scores = np.empty(batch.shape[:3], np.uint8), None
        graph = self._graph
        request = graph.requests.get()
        for i in range(len(batch)):
            with self._binding:  # as in infer
                request.set_input_tensor(self._ov_tensor(np.ascontiguousarray(batch[i:i + 1])))
            request.infer()
            self._take_ids(graph, request, ids[i])
            with self._binding:
                one = request.get_output_tensor(graph.scores_out).data[0]
                if scores is None:
                    scores = np.empty((len(batch), *one.shape), np.float16)
                scores[i] = one
        return ids, scores

    def no_scores_reason(self) -> str:
        if self.meta.extra.get("foreign", {}).get("format") == "openvino-ir":  # an IR from another tool: ids only
            return ("--temporal on needs class scores, and this OpenVINO IR gives class ids only; use --temporal off, "
                    "or run the model's ONNX export (rtseg reads the scores before its ArgMax)")
        return ONNX_NO_SCORES

    def _infer_parallel(self, batch: np.ndarray, out: np.ndarray) -> None:
        """One frame per infer request, as many in flight as the compiled streams allow."""
        graph = self._graph
        if graph.queue is None:
            graph.queue = _ov().AsyncInferQueue(graph.compiled)  # jobs = the compiled model's optimal number
        # The callback runs when a request finishes, before its buffer is reused: take the ids out. It
        # runs in OpenVINO's own thread while this one waits in wait_all, outside the binding lock.
        graph.queue.set_callback(lambda req, i: self._take_ids(graph, req, out[i], locked=False))
        for i in range(len(batch)):
            graph.queue.start_async({0: np.ascontiguousarray(batch[i:i + 1])}, userdata=i)
        graph.queue.wait_all()

    def describe(self) -> str:
        return f"{super().describe()}, {self.precision}"
