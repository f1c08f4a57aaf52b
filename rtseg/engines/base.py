"""The interface every inference backend implements.

An engine turns BGR uint8 frames into uint8 class ids. The work is split the way the
pipeline's stages run it: ``preprocess`` (host: resize to the inference size, stack),
``infer`` (the backend: normalise, network, argmax), ``postprocess`` (host: ids back to
each frame's size, nearest neighbour).
"""
from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from typing import Callable, Generic, Sequence, TypeVar

import cv2
import numpy as np

from rtseg.devices import DEVICE_CHOICES, Device, parse_device
from rtseg.errors import RtsegError
from rtseg.meta import PIL_FILTERS, ModelMeta
from rtseg.viz import resize_nearest

__all__ = ["Engine", "parse_size", "PerThread", "check_streams", "engine_device", "ONNX_NO_SCORES", "infer_calls",
           "LETTERBOX_GREY", "letterbox_box", "crop_box"]

LETTERBOX_GREY = 114  # ultralytics' padding value (LetterBox(padding_value=114)), on every channel

ONNX_NO_SCORES = ("--temporal on needs class scores, and this ONNX file has no 'scores' output (a model from another "
                  "tool that gives class ids, or one exported before rtseg gave scores: export it again); "
                  "use --temporal off")

T = TypeVar("T")


def parse_size(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """'512x1024' -> (512, 1024). Raises RtsegError naming the bad value."""
    if text is None:
        return None
    if not isinstance(text, str):
        h, w = (int(v) for v in text)
        return h, w
    parts = text.lower().replace("*", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise RtsegError(f"size must be HxW, e.g. 512x1024; got {text!r}") from None
    if h < 32 or w < 32 or h > 8192 or w > 8192:
        raise RtsegError(f"size {text!r} is out of range: each side must be 32..8192 pixels")
    return h, w


def letterbox_box(frame: Sequence[int], size: Sequence[int]) -> tuple[int, int, int, int]:
    """Where a frame of ``frame`` (H, W) lies in an input of ``size`` (h, w) when letterboxed:
    (top, left, height, width). Scaled to fit with its aspect kept, centred, the rest padding: the
    placement of ultralytics' ``LetterBox(auto=False, center=True)`` (its rounding included), so a
    model trained there sees what it was trained on, and its ids map back to the same pixels."""
    (fh, fw), (h, w) = frame, size
    r = min(h / fh, w / fw)
    nh, nw = max(round(fh * r), 1), max(round(fw * r), 1)
    return round((h - nh) / 2 - 0.1), round((w - nw) / 2 - 0.1), nh, nw


def _pil_resize(frame: np.ndarray, size: tuple[int, int], pil_filter: int) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 resized to ``size`` (w, h) by Pillow with ``pil_filter``."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(size, resample=pil_filter))


def crop_box(values: np.ndarray, box: tuple[int, int, int, int], size: Sequence[int]) -> np.ndarray:
    """The part of ``values`` (..., h', w'), a map over an input of ``size`` (h, w) at any resolution
    (ids at the input size, scores at the network's stride), that ``box`` (in input pixels) covers."""
    top, left, nh, nw = box
    h, w = values.shape[-2:]
    if (h, w) != tuple(size):
        sy, sx = h / size[0], w / size[1]
        top, left, nh, nw = round(top * sy), round(left * sx), max(1, round(nh * sy)), max(1, round(nw * sx))
    return values[..., top:top + nh, left:left + nw]


def aspect_size(base: Sequence[int], frame: Sequence[int], multiple: int = 8) -> tuple[int, int]:
    """An inference size with about the pixels of ``base`` (h, w) and the shape of ``frame``
    (H, W): ``base`` itself when the shapes agree within 1%, else sides multiples of ``multiple``
    (the networks' first stride), at least 32, the one of the two nearest heights whose width keeps
    the aspect best. CamVid's 360x480 for a 540x960 frame: 312x552."""
    if aspect_distortion(base, frame) <= 0.01:
        return int(base[0]), int(base[1])
    pixels, aspect = base[0] * base[1], frame[1] / frame[0]
    ideal = math.sqrt(pixels / aspect)
    best: tuple[float, tuple[int, int]] | None = None
    for h in {max(32, math.floor(ideal / multiple) * multiple), max(32, math.ceil(ideal / multiple) * multiple)}:
        w = max(32, round(h * aspect / multiple) * multiple)
        err = abs((w / h) / aspect - 1)
        if best is None or err < best[0] - 1e-9 or (abs(err - best[0]) <= 1e-9 and h * w < best[1][0] * best[1][1]):
            best = (err, (h, w))
    return best[1]


def aspect_distortion(size: Sequence[int], frame: Sequence[int]) -> float:
    """How much resizing ``frame`` (H, W) to ``size`` (h, w) stretches it: |aspect ratio / 1 - 1|."""
    return abs((size[1] / size[0]) / (frame[1] / frame[0]) - 1)


def engine_device(text: str | None, *, default: str = "auto", others: Sequence[str] = (),
                  runtime: str = "") -> Device:
    """:func:`rtseg.devices.parse_device` for an engine: a value no runtime takes is a one-line
    'unknown device' error naming ``runtime`` (when given) and what is allowed."""
    try:
        return parse_device(text, default=default, others=others)
    except RtsegError:
        where = f" for {runtime}" if runtime else ""
        extra = f" (OpenVINO also takes {', '.join(others)})" if others else ""
        raise RtsegError(f"unknown device {text!r}{where}; use {DEVICE_CHOICES}{extra}") from None


def check_streams(streams: int) -> int:
    """``streams`` as given, or a one-line error naming the flag."""
    if not isinstance(streams, int) or streams < 1:
        raise RtsegError(f"--streams must be >= 1; got {streams}")
    return streams


def infer_calls(engine: "Engine", batches: Sequence[np.ndarray], calls: int, *, name: str,
                threads: int | None = None) -> float:
    """Seconds for ``calls`` ``engine.infer`` calls (cycling over ``batches``) made from ``threads``
    threads at once (default: ``engine.in_flight``; 0: in the calling thread), for timing.

    A Ctrl-C or SIGTERM meanwhile (a KeyboardInterrupt in the calling thread) stops the workers
    after their current call, waits for them, and goes on. It does not wait in ``Thread.join``:
    CPython 3.11 and 3.12, interrupted there, mark a thread that is still running as finished, so
    the interpreter exits under it; a thread inside PyTorch then aborted the whole process
    ("terminate called without an active exception") instead of exiting 143. A worker's error
    stops the others and is raised here."""
    k = max(1, getattr(engine, "in_flight", 1)) if threads is None else threads
    if k == 0:
        t0 = time.perf_counter()
        for i in range(calls):
            engine.infer(batches[i % len(batches)])
        return time.perf_counter() - t0
    stop = threading.Event()
    done = [threading.Event() for _ in range(k)]
    failed: list[BaseException] = []

    def work(j: int) -> None:
        try:
            for i in range(j, calls, k):
                if stop.is_set():
                    return
                engine.infer(batches[i % len(batches)])
        except Exception as exc:  # noqa: BLE001 - raised again in the calling thread, below
            failed.append(exc)
            stop.set()
        finally:
            done[j].set()

    workers = [threading.Thread(target=work, args=(j,), name=f"{name}-{j}") for j in range(k)]
    t0 = time.perf_counter()
    for t in workers:
        t.start()
    try:
        for event in done:
            while not event.wait(0.1):
                pass
    except BaseException:
        stop.set()
        for event in done:
            event.wait(30.0)  # one call at most: the workers check the stop between calls
        raise
    elapsed = time.perf_counter() - t0
    for t in workers:
        t.join()  # they have finished: this only collects them
    if failed:
        raise failed[0]  # a worker's error in the caller, not a traceback from a thread
    return elapsed


class PerThread(Generic[T]):
    """Each calling thread gets its own item, made by ``make(k)`` the first time that thread
    asks (k = 0, 1, ... in the order threads first ask). For backends whose handles must not be
    shared between threads (an OpenVINO infer request) or that run best one per thread (an ONNX
    Runtime session per stream: ``make`` picks ``sessions[k % streams]``)."""

    def __init__(self, make: Callable[[int], T]):
        self._make = make
        self._local, self._lock, self._count = threading.local(), threading.Lock(), 0

    def get(self) -> T:
        item = getattr(self._local, "item", None)
        if item is None:
            with self._lock:
                k, self._count = self._count, self._count + 1
            item = self._local.item = self._make(k)
        return item


class Engine(ABC):
    """A loaded model. Subclasses set ``name``, ``device``, ``meta`` and ``input_size``.

    ``streams``: how many ``infer`` calls the engine runs at once, each from its own thread with
    its share of the CPU threads (ONNX Runtime and OpenVINO). ``infer`` is safe to call from that
    many threads; the pipeline's infer stage runs that many workers. On a CPU this trades one
    frame's latency for throughput: one stream spends both cores on a frame, and the pipeline's
    own threads then stall it; two streams each keep a core busy on their own frame.

    ``last_infer_ms``: the device time of the last ``infer`` call in ms, measured on the device
    (TensorRT sets it from CUDA events); None where the engine does not measure it."""

    name: str = "engine"
    device: str = "cpu"
    meta: ModelMeta
    input_size: tuple[int, int]  # (h, w) the network runs at
    streams: int = 1
    last_infer_ms: float | None = None  # device time of the last infer call (TensorRT); None: not measured
    has_scores: bool = False  # infer_scores works: the artifact gives class scores beside the ids

    @property
    def in_flight(self) -> int:
        """Frames to hand the engine at once, each from its own thread (the pipeline's infer workers):
        its streams, unless the engine keeps more queued (OpenVINO: one more than its streams)."""
        return self.streams

    @property
    def ids_on_host(self) -> bool:
        """Whether the ids are made on the host from the network's scores now, its own Resize and
        ArgMax cut off (:mod:`rtseg.engines.host_ids`: OpenVINO and ONNX Runtime on a CPU)."""
        return False

    @property
    def resize(self) -> str:
        """How a frame becomes the input: ``stretch`` to the inference size, or ``letterbox`` (the
        aspect kept, grey padding: a foreign model from a tool that trains that way, ultralytics)."""
        return self._extra.get("resize", "stretch")

    @property
    def _extra(self) -> dict:
        meta = getattr(self, "meta", None)  # an engine made without metadata (a test's) stretches
        return meta.extra if meta is not None else {}

    def content_box(self, frame: Sequence[int]) -> tuple[int, int, int, int] | None:
        """Where a frame of ``frame`` (H, W) lies in the input (top, left, h, w): None when it fills
        it (stretched, or letterboxed without padding)."""
        if self.resize != "letterbox":
            return None
        box = letterbox_box(frame, self.input_size)
        return None if box == (0, 0, *self.input_size) else box

    def to_frame(self, values: np.ndarray, frame: Sequence[int]) -> np.ndarray:
        """Ids or scores over the input -> over the frame only: the padding of a letterboxed frame cut
        off, so they have the frame's aspect and enlarge to it as a stretched frame's do."""
        box = self.content_box(frame)
        return values if box is None else np.ascontiguousarray(crop_box(values, box, self.input_size))

    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 frames of any size -> uint8 batch (N, h, w, 3) at the inference size, each
        stretched to it or letterboxed into it (:attr:`resize`)."""
        h, w = self.input_size
        batch = np.empty((len(frames), h, w, 3), np.uint8)  # one allocation per batch
        pil = PIL_FILTERS.get(self._extra.get("resample", ""))
        for i, frame in enumerate(frames):
            box = self.content_box(frame.shape[:2])
            if frame.shape[:2] == (h, w):
                batch[i] = frame
            elif box is None and pil is None:
                cv2.resize(frame, (w, h), dst=batch[i], interpolation=cv2.INTER_LINEAR)
            elif box is None:
                batch[i] = _pil_resize(frame, (w, h), pil)
            else:  # the padding bands grey, the frame resized into the rest
                top, left, nh, nw = box
                batch[i, :top], batch[i, top + nh:] = LETTERBOX_GREY, LETTERBOX_GREY
                batch[i, top:top + nh, :left], batch[i, top:top + nh, left + nw:] = LETTERBOX_GREY, LETTERBOX_GREY
                region = batch[i, top:top + nh, left:left + nw]
                if pil is None and region.flags.c_contiguous:  # full-width (a wide frame): resized in place
                    cv2.resize(frame, (nw, nh), dst=region, interpolation=cv2.INTER_LINEAR)
                else:
                    region[...] = (cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
                                   if pil is None else _pil_resize(frame, (nw, nh), pil))
        return batch

    def check_batch(self, batch: np.ndarray) -> None:
        """Raise a one-line error unless ``batch`` is uint8 (N, h, w, 3) at the inference size."""
        h, w = self.input_size
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (h, w, 3):
            raise RtsegError(f"infer expects uint8 (N, {h}, {w}, 3), got {batch.dtype} {batch.shape}")

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, h, w, 3) BGR -> uint8 (N, h, w) class ids."""

    def infer_scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, h, w, 3) BGR -> (uint8 (N, h, w) class ids, float16 (N, C, h', w') class
        scores (logits) at the network's own output resolution, e.g. h' = h/8): the one network call
        gives both. Engines whose artifact has no scores (``has_scores`` False) refuse in one line."""
        raise RtsegError(self.no_scores_reason())

    def no_scores_reason(self) -> str:
        """Why ``infer_scores`` is refused (one line, for --temporal on)."""
        return (f"--temporal on needs class scores, and {self.name} gives class ids only here; "
                "use --temporal off, or run an rtseg .pt (or its ONNX export) on pytorch, onnxruntime or openvino")

    def postprocess(self, ids: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """Class ids at the inference size -> one (H, W) uint8 array per frame at its own size (a
        letterboxed frame's padding cut off first). Pixel centres are aligned (see
        ``rtseg.viz.resize_nearest``), as in preprocess's INTER_LINEAR and the training labels; plain
        INTER_NEAREST would shift the ids by up to a pixel against the frame at a fractional scale."""
        out = []
        for one, (fh, fw) in zip(ids, sizes):
            one = self.to_frame(one, (fh, fw))
            out.append(one if one.shape == (fh, fw) else resize_nearest(one, (fh, fw)))
        return out

    def predict(self, frame: np.ndarray) -> np.ndarray:
        """One BGR uint8 frame (H, W, 3) -> (H, W) uint8 class ids at the frame's size."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise RtsegError(f"predict expects an HxWx3 uint8 BGR frame, got shape {frame.shape} dtype {frame.dtype}")
        return self.postprocess(self.infer(self.preprocess([frame])), [frame.shape[:2]])[0]

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Several frames at once (one network call)."""
        return self.postprocess(self.infer(self.preprocess(frames)), [f.shape[:2] for f in frames])

    def warm_up(self, calls: int = 1) -> None:
        """``calls`` infer calls on a black frame at the inference size, so that the first real
        frame does not pay for what a backend does on its first call (kernel choice, memory pools,
        a CUDA graph capture). In the calling thread: a multi-stream engine's other sessions stay
        cold."""
        n = getattr(self, "batch", None) or 1  # a fixed-batch ONNX file takes its own batch size only
        blank = np.zeros((n, *self.input_size, 3), np.uint8)
        for _ in range(calls):
            self.infer(blank)

    def describe(self) -> str:
        h, w = self.input_size
        streams = f", {self.streams} streams" if self.streams > 1 else ""
        return (f"{self.name} on {self.device}, {self.meta.model} ({self.meta.dataset}, {self.meta.num_classes} classes) "
                f"at {h}x{w}{streams}")
