"""One video of a batch: :func:`process_one`, the unit a thread or a Ray task runs.

It opens the video and the engine with :func:`rtseg.pipeline.context.open_run` (the engine from
a per-thread cache keyed by the spec, so videos of one shape share it) and runs
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from rtseg.errors import RtsegError
from rtseg.fleet.inputs import Item
from rtseg.pipeline.context import EngineCache, RunSpec, open_run

__all__ = ["BatchOptions", "process_one", "DISK_FULL"]

log = logging.getLogger(__name__)

DISK_FULL = "disk full"  # the error of an input that ran out of space: the batch takes no new ones


@dataclass(frozen=True)
class BatchOptions:
    """What every video of a batch gets: the run (``rtseg run``'s options; its source and output
    paths are set per video) and which extra files each video writes."""

    spec: RunSpec = RunSpec()
    masks: bool = False  # also write class-id PNGs to <name>_masks/
    stats: bool = False  # also keep each frame's class shares in <name>_stats.jsonl (the manifest always has the totals)

    @classmethod
    def of(cls, *, masks: bool = False, stats: bool = False, **options: Any) -> "BatchOptions":
        """From ``rtseg run``'s options by name (``weights``, ``runtime``, ``classes``, ``stride``, ...)."""
        return cls(RunSpec.from_options(None, **options), masks=masks, stats=stats)

    @property
    def device(self) -> str:
        return self.spec.engine.device

    def for_item(self, item: Item, outputs: dict[str, Path], shares: Path) -> RunSpec:
        """The run of one video: its input, and its outputs at their temporary names."""
        s = self.spec
        return replace(s, source=replace(s.source, source=item.input),
                       outputs=replace(s.outputs, output=outputs["output"], masks=outputs.get("masks"), stats=shares,
                                       show=False, default_output=False))


_engines = threading.local()  # each thread (or Ray worker) keeps its last engine: videos of one shape reuse it


def _engine_cache() -> EngineCache:
    if not hasattr(_engines, "cache"):
        _engines.cache = EngineCache()
    return _engines.cache


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


def process_one(item: Item, options: BatchOptions = BatchOptions(), *, on_frame: Callable[[int], None] | None = None,
                stop: threading.Event | None = None) -> dict:
    """Segment ``item.input`` as ``rtseg run`` would, writing its outputs under temporary names
    renamed when complete; returns its manifest line. ``status`` is ``done`` or ``failed`` (with a
    one-line ``error``), or ``interrupted`` (``stop`` set or Ctrl-C: nothing kept, nothing recorded)."""
    from rtseg.pipeline import StopRun
    from rtseg.pipeline.app import segment

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
        if on_frame is not None:
            on_frame(n)

    try:
        for final in finals.values():  # an earlier, killed attempt's
            _clear_stale(final)
        Path(item.output).parent.mkdir(parents=True, exist_ok=True)
        run = open_run(options.for_item(item, temps, shares), note=log.warning, engines=_engine_cache())
        written = segment(run, on_frame=frame)
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
