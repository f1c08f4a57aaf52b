"""One video of a batch: :func:`process_one`, the unit a thread or a Ray task runs.

It opens the video and the engine through :mod:`rtseg.pipeline.context` and runs
:func:`rtseg.pipeline.app.segment`, as ``rtseg run`` does, writing every output under a
temporary name (``.NAME.TOKEN.tmp``) renamed when complete; a killed attempt's temporaries are
removed by the next attempt at the same input.
"""
from __future__ import annotations

import errno
import glob
import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rtseg.batch.inputs import Item
from rtseg.errors import RtsegError
from rtseg.pipeline.context import EngineOptions, SourceOptions
from rtseg.pipeline.temporal import parse_temporal

__all__ = ["BatchOptions", "process_one", "DISK_FULL", "CRASH_ENV"]

log = logging.getLogger(__name__)

DISK_FULL = "disk full"  # the error of an input that ran out of space: the batch takes no new ones
# Tests only: a folder; the first process to reach frame 3 of any input (once per folder) exits
# on the spot, as a worker killed mid-video would.
CRASH_ENV = "RTSEG_BATCH_TEST_CRASH"


@dataclass(frozen=True)
class BatchOptions:
    """The ``rtseg run`` options that apply to each video of a batch."""

    weights: str | None = None  # .pt/.pth, .onnx, .plan/.engine; None: the bundled CamVid weights
    runtime: str = "auto"  # auto, pytorch, onnxruntime, openvino or tensorrt
    device: str = "cpu"  # cpu, cuda, cuda:N or auto; on a Ray cluster with GPUs, auto/cuda take one GPU a task
    size: str | None = None  # inference HxW; None: the weights' pixel count in each video's shape
    threads: int = 0  # CPU threads for the network (0 = one per core; on Ray, the task's CPU share)
    streams: int = 0  # frames inferred at once (0 = auto, as rtseg run)
    view: str = "overlay"  # overlay, mask or side-by-side
    alpha: float = 0.5  # weight of the class colours in the overlay
    legend: bool = True  # draw the class names and colours
    codec: str = "auto"  # auto (H.264 through PyAV), h264 or opencv
    masks: bool = False  # also write class-id PNGs to <name>_masks/
    stats: bool = False  # also keep each frame's class shares in <name>_stats.jsonl (the manifest always has the totals)
    start: str | None = None  # first frame (120) or time (4.5s) of each video
    end: str | None = None  # frame or time to stop before
    stride: int = 1  # every Nth frame
    max_frames: int | None = None  # stop each video after N frames
    sequential: bool = False  # stages one after another (for comparison)
    queue_size: int = 0  # frames each queue holds (0 = 4)
    precision: str = "auto"  # auto, fp32, bf16 or fp16, as rtseg run's --precision
    temporal: str = "auto"  # auto, on or off, as rtseg run's --temporal

    def engine_options(self) -> EngineOptions:
        return EngineOptions(weights=self.weights, runtime=self.runtime, device=self.device, size=self.size,
                             threads=self.threads, streams=self.streams, precision=self.precision)


_cache = threading.local()  # each thread (or Ray worker) keeps its last engine: videos of one shape reuse it


def _engine(options: BatchOptions, frame_size: tuple[int, int]):
    eo = options.engine_options()
    streams = eo.streams_for(live=False, sequential=options.sequential)
    key = (eo, tuple(frame_size), streams)
    if getattr(_cache, "key", None) != key:
        _cache.key, _cache.engine = None, None  # drop the old one before opening the next
        _cache.engine = eo.open(frame_size, streams=streams, note=log.warning)
        _cache.key = key
    return _cache.engine


def _temp(final: Path, token: str) -> Path:
    return final.with_name(f".{final.stem}.{token}.tmp{final.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _clear_stale(final: Path) -> None:
    """Temporaries of ``final`` left by an attempt that was killed (any token)."""
    for p in final.parent.glob(f".{glob.escape(final.stem)}.{'[0-9a-f]' * 8}.tmp*"):
        _remove(p)


def _disk_full(exc: BaseException) -> bool:
    seen = exc
    while seen is not None:
        if getattr(seen, "errno", None) == errno.ENOSPC or "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def one_line(exc: BaseException) -> str:
    from rtseg.errors import redact

    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text if isinstance(exc, (RtsegError, OSError)) else f"{type(exc).__name__}: {text}")


def _crash_hook(frames: int) -> None:
    folder = os.environ.get(CRASH_ENV)
    if folder and frames == 3:
        try:
            fd = os.open(os.path.join(folder, "crashed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(75)


def process_one(item: Item, options: BatchOptions = BatchOptions(), *, on_frame: Callable[[int], None] | None = None,
                stop: threading.Event | None = None) -> dict:
    """Segment ``item.input`` as ``rtseg run`` would, writing its outputs under temporary names
    renamed when complete; returns its manifest line. ``status`` is ``done`` or ``failed`` (with a
    one-line ``error``), or ``interrupted`` (``stop`` set or Ctrl-C: nothing kept, nothing recorded)."""
    from rtseg.pipeline import StopRun
    from rtseg.pipeline.app import Outputs, segment

    t0 = time.perf_counter()
    record = {"input": item.input, "status": "failed", "frames": 0, "fps": 0.0, "wall_s": 0.0,
              "output": item.output, "error": None}
    finals = item.finals()
    token = secrets.token_hex(4)
    temps = {k: _temp(p, token) for k, p in finals.items()}
    # The class shares for the manifest are always counted; their per-frame file is kept with --stats.
    shares = temps.get("stats") or _temp(Path(item.output).with_suffix(".jsonl"), token)

    def frame(n: int, _dropped: int) -> None:
        if stop is not None and stop.is_set():
            raise StopRun
        _crash_hook(n)
        if on_frame is not None:
            on_frame(n)

    try:
        for final in finals.values():  # an earlier, killed attempt's
            _clear_stale(final)
        Path(item.output).parent.mkdir(parents=True, exist_ok=True)
        src = SourceOptions(item.input, start=options.start, end=options.end, stride=options.stride).open()
        try:
            engine = _engine(options, src.size)
        except BaseException:
            src.close()
            raise
        outputs = Outputs(output=temps["output"], masks=temps.get("masks"), stats=shares, view=options.view,
                          alpha=options.alpha, legend=options.legend, codec=options.codec)
        written = segment(src, engine, outputs, sequential=options.sequential, queue_size=options.queue_size,
                          max_frames=options.max_frames, on_frame=frame, temporal=parse_temporal(options.temporal))
        result = written.result
        if result.interrupted or result.stopped_by_user:
            record["status"] = "interrupted"
        else:
            for key, final in finals.items():  # the video last: it is what says "done" with the manifest
                if final.is_dir():  # a masks folder an earlier, unrecorded run left (a file is replaced as is)
                    _remove(final)
                os.replace(temps[key], final)
            record.update(status="done", frames=result.frames, fps=round(result.fps, 3),
                          classes={r["class"]: round(r["mean_share"], 5) for r in written.stats.summary()})
            record.update({k: str(v) for k, v in finals.items() if k != "output"})
    except Exception as exc:  # one input's failure (bad file, full disk, a stage's error) is its line, not the batch's end
        record["error"] = f"{DISK_FULL}: {one_line(exc)}" if _disk_full(exc) else one_line(exc)
        log.debug("%s failed", item.input, exc_info=exc)
    finally:
        for final in finals.values():  # this attempt's leftovers (and the shares file when not kept)
            _clear_stale(final)
    record["wall_s"] = round(time.perf_counter() - t0, 3)
    return record
