"""The pipelined app from Python: ``for r in rtseg.stream("video.mp4"): ...``.

``stream`` runs the same read, transform and infer stages as ``rtseg run``, in their own
threads joined by bounded queues, and hands the results to the caller's loop in frame order:
the loop body is the write stage. Leaving the loop (``break``, an exception in the body,
Ctrl-C) stops every thread within about a second; a stage that fails raises in the caller's
thread, naming the stage. :class:`VideoWriter` writes the same H.264 video ``rtseg run`` does.

    import rtseg

    with rtseg.VideoWriter("street_seg.mp4") as out:
        for r in rtseg.stream("street.mp4"):
            out.write(r)                        # the overlay, with its legend
            print(r.index, r.timings["infer"])  # r.ids: uint8 class ids at the frame's size
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rtseg.errors import RtsegError
from rtseg.pipeline.packet import Look, Packet
from rtseg.pipeline.runner import Sink, StopRun
from rtseg.pipeline.sinks import VideoSink
from rtseg.viz import Legend, draw, i420_to_bgr, palette_lut

__all__ = ["Result", "stream", "VideoWriter"]

_TICK = 0.1  # s: how often a wait re-checks whether the other side has stopped


@dataclass
class Result:
    """One frame and what the network made of it."""

    index: int  # position in the stream (after --start/--stride-like trimming: 0, 1, 2, ...)
    name: str  # file-name stem (the image's, for folders)
    frame: np.ndarray  # BGR uint8 (H, W, 3), as read
    timings: dict[str, float]  # milliseconds this frame spent in read, transform, infer
    classes: tuple[str, ...]  # class names, by id
    palette: tuple[tuple[int, int, int], ...]  # RGB colour of each class
    fps: float  # the source's frame rate
    dropped: int  # live sources: stale frames skipped so far
    timestamp: float | None  # s: capture time (a file's PTS, the wall clock at a camera's grab, the caller's)
    _packet: Packet = field(repr=False)
    _legend: Legend | None = field(default=None, repr=False)

    @property
    def confidence(self) -> np.ndarray:
        """float32 (H, W) in 0..1: the top class's probability at the frame's size (after the temporal
        filter when it ran), computed when first asked. Needs ``rtseg.stream(..., scores=True)``
        (or a confidence output) and a model that gives class scores."""
        if self._packet.probs is None:
            raise RtsegError("Result.confidence needs rtseg.stream(..., scores=True) and a model that gives class scores")
        return self._packet.confidence()

    @property
    def scores(self) -> np.ndarray:
        """float32 (C, h, w): each class's probability at the network's own resolution (a fraction of
        the inference size), as the run kept them; see :attr:`confidence`."""
        if self._packet.probs is None:
            raise RtsegError("Result.scores needs rtseg.stream(..., scores=True) and a model that gives class scores")
        return self._packet.probs.transpose(2, 0, 1)

    @property
    def ids(self) -> np.ndarray:
        """uint8 class ids (H, W) at the frame's size, enlarged from the inference size when
        first asked (as ``engine.predict`` does)."""
        return self._packet.frame_ids()

    def picture(self, view: str = "overlay", alpha: float = 0.5, legend: bool = True) -> tuple[np.ndarray, str]:
        """(picture, format) for ``view``, ``alpha``, ``legend``: the one the stream drew ahead when
        it matches (format "i420" or "bgr"; not a copy), else one drawn now in "bgr". For writers
        that take either format; :meth:`overlay` always gives BGR."""
        Look(view=view, alpha=alpha)  # validates both, in one line
        p = self._packet
        if p.picture is not None and p.look == (view, round(alpha, 3), bool(legend)):
            return p.picture, p.picture_format
        if legend and self._legend is None:
            self._legend = Legend(self.classes, self.palette)
        return draw(self.frame, p.ids, view, alpha, lut=palette_lut(self.palette),
                    legend=self._legend if legend else None)

    def overlay(self, view: str = "overlay", alpha: float = 0.5, legend: bool = True) -> np.ndarray:
        """The picture ``rtseg run`` writes (BGR): ``view`` overlay, mask or side-by-side. The one
        the stream drew in its own thread (its ``view``, ``alpha``, ``legend``) costs nothing more."""
        picture, fmt = self.picture(view, alpha, legend)
        if fmt == "i420":
            return i420_to_bgr(picture)
        return picture.copy() if picture is self._packet.picture else picture


class _Handoff(Sink):
    """The write stage of a stream: passes each packet to the caller's thread."""

    takes_i420 = True  # the picture drawn ahead in I420, as H.264 (VideoWriter) takes it

    def __init__(self, cancel: threading.Event):
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.cancel = cancel

    def put(self, item: Any) -> None:
        while True:
            if self.cancel.is_set():
                raise StopRun  # the caller left the loop: end the run cleanly
            try:
                self.queue.put(item, timeout=_TICK)
                return
            except queue.Full:
                continue

    def write(self, packet: Packet) -> None:
        self.put(packet)


_END = object()


def stream(source: Any = None, **options: Any) -> Iterator[Result]:
    """Segment ``source`` (a video file, image folder or glob, camera index or stream URL; frames
    the caller holds, as an iterable of BGR frames or of ``(frame, timestamp)`` pairs, or a
    :class:`~rtseg.pipeline.opener.FrameFeed` pushed into; None: the bundled demo clip), yielding a
    :class:`Result` per frame in order. Files, folders and iterables lose no frame; live sources
    (cameras, URLs, a feed, an iterable with ``live=True``) drop stale frames (counted in
    ``Result.dropped``). Each result carries its capture ``timestamp``.

    ``options`` are ``rtseg run``'s, by the names of :class:`rtseg.pipeline.spec.RunSpec`'s fields
    (``weights`` for --engine, ``runtime``, ``size``, ``stride``, ``temporal``, ``classes``, ...),
    with the same defaults but ``device`` (auto: CUDA when PyTorch sees a GPU, else the CPU).
    ``view``, ``alpha``, ``legend``: the picture a post stage draws in its own thread, as ``rtseg
    run`` does, for ``Result.overlay`` and :class:`VideoWriter` (``view=None``: draw nothing ahead).
    A bad option raises :class:`RtsegError`, one line naming it, at the call."""
    from rtseg.pipeline.context import RunSpec, open_run

    picture = options.get("view", "overlay") is not None
    if not picture:
        options.pop("view")
    options["device"] = _device(options.get("device", "auto"))
    run = open_run(RunSpec.from_options(source, **options))  # errors at the call, not at the first next()
    return _iterate(run, picture=picture)


def _device(device: str) -> str:
    """auto as PyTorch sees it (for every runtime); other names pass through."""
    if str(device).strip().lower() != "auto":
        return device
    try:
        import torch  # only for auto: which GPU PyTorch sees (1 s to import; device="cpu" skips it)
    except ImportError:  # no PyTorch (an ONNX-only install): no CUDA through it either
        return "cpu"
    from rtseg.devices import parse_device

    return str(parse_device(device).resolve(torch.cuda.is_available))


def _iterate(run, *, picture: bool = True) -> Iterator[Result]:
    """The generator behind :func:`stream` (a separate function so that opening errors raise at
    the call, not at the first ``next``): :func:`rtseg.pipeline.app.segment` into a hand-off
    sink, the results read in the caller's thread."""
    from rtseg.pipeline.app import segment

    src, engine = run.source, run.engine
    cancel = threading.Event()
    handoff = _Handoff(cancel)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = segment(run, handoff, picture=picture).result
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            try:
                handoff.put(_END)
            except StopRun:
                pass

    thread = threading.Thread(target=work, name="rtseg-stream", daemon=True)
    thread.start()
    names, palette = tuple(engine.meta.class_names), tuple(engine.meta.palette)
    try:
        while True:
            try:
                item = handoff.queue.get(timeout=_TICK)
            except queue.Empty:
                if not thread.is_alive() and handoff.queue.empty():
                    break
                continue
            if item is _END:
                break
            yield Result(index=item.index, name=item.name, frame=item.frame, timings=dict(item.timings), classes=names,
                         palette=palette, fps=src.fps, dropped=src.dropped, timestamp=item.timestamp, _packet=item)
        if "error" in outcome:
            raise outcome["error"]
    finally:
        cancel.set()  # the caller left the loop (break, exception, Ctrl-C) or the stream ended
        thread.join(timeout=2.0)


class VideoWriter:
    """The overlay video ``rtseg run`` writes (H.264 in .mp4/.mov/.mkv through PyAV), from a
    user's loop: ``write(result)`` draws ``result.overlay(view, alpha)``; ``write(picture)``
    takes a BGR picture as it is. The frame rate defaults to the results' source's. The file
    appears complete when the writer closes (``with`` block or ``close()``), also after Ctrl-C;
    until then ``<name>.partial<suffix>`` plays up to its last second, even if the process is
    killed. A write error (a full disk) raises :class:`RtsegError`, one line naming the file and
    the reason; the frames before it stay playable in the partial file."""

    def __init__(self, path: str | Path, fps: float | None = None, *, view: str = "overlay", alpha: float = 0.5,
                 legend: bool = True, codec: str = "auto"):
        Look(view=view, alpha=alpha)
        self.path, self.fps, self.view, self.alpha, self.legend, self.codec = Path(path), fps, view, alpha, legend, codec
        if self.path.suffix.lower() not in (".mp4", ".m4v", ".mov", ".mkv", ".avi"):
            raise RtsegError(f"VideoWriter({str(path)!r}): use a .mp4, .mov, .mkv or .avi file")
        self._sink: VideoSink | None = None
        self.frames = 0

    def write(self, item: Result | np.ndarray) -> None:
        if isinstance(item, Result):
            # the picture the stream drew ahead when it matches (I420, as the encoder wants), else drawn now
            (picture, fmt), fps = item.picture(self.view, self.alpha, self.legend), item.fps
        else:
            picture, fmt, fps = np.asarray(item), "bgr", None
            if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
                raise RtsegError(f"VideoWriter.write takes a Result or a BGR uint8 (H, W, 3) picture; "
                                 f"got shape {picture.shape} dtype {picture.dtype}")
        if self._sink is None:
            self._sink = VideoSink(self.path, self.fps or fps or 30.0, codec=self.codec)
        self._sink.write_picture(picture, fmt)
        self.frames += 1

    def close(self, *, interrupted: bool = False) -> None:
        if self._sink is not None:
            self._sink.close(completed=not interrupted, interrupted=interrupted)
            self._sink = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Whatever ended the block (Ctrl-C included), the frames written so far make a playable file.
        self.close(interrupted=exc_type is not None)
