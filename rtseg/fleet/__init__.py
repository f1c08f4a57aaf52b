"""Segment a fleet of videos: ``rtseg batch`` and ``rtseg.batch(...)`` (:func:`batch`).

Every input goes through the pipeline ``rtseg run`` uses (:func:`process_one`), on this machine
(one video after another, each pipelined) or as one Ray task per video on a local Ray instance
or a cluster (``cluster="ray"`` / ``"ray://HOST:PORT"`` / ``RAY_ADDRESS``). Outputs go under
``output_dir`` with names that mirror the inputs; on a cluster that folder (and the inputs) must
be on a file system every node sees, under the same paths.

Nothing is lost or written twice: each output is written under a temporary name and renamed when
complete, and ``output_dir/manifest.jsonl`` (one line per input, replaced atomically after each
one) says what is done, so a rerun skips those and redoes the rest.

    import rtseg

    result = rtseg.batch(["clips/"], "out", runtime="onnxruntime", classes="cityscapes")
    print([r["input"] for r in result.failed])
"""
from __future__ import annotations

import errno
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rtseg.errors import RtsegError
from rtseg.fleet.inputs import VIDEO_SUFFIXES, Item, find_inputs, plan
from rtseg.fleet.worker import DISK_FULL, BatchOptions, process_one

__all__ = ["BatchOptions", "BatchResult", "Item", "batch", "run_batch", "process_one", "find_inputs", "plan",
           "read_manifest", "MANIFEST", "VIDEO_SUFFIXES"]

MANIFEST = "manifest.jsonl"


@dataclass
class BatchResult:
    """What a batch did: this run's manifest lines (input order), and why it stopped early if it did."""

    records: list[dict]
    manifest: Path
    wall_s: float
    interrupted: bool = False  # stop set (Ctrl-C, SIGTERM): what is complete is kept
    disk_full: bool = False  # an output ran out of space: no input was started after it
    not_started: list[str] = field(default_factory=list)  # inputs left for a rerun

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_started and not self.interrupted


def read_manifest(path: str | Path) -> dict[str, dict]:
    """``manifest.jsonl`` as {input: line}; a line cut short (a crash mid-write) is skipped."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    records = {}
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "input" in rec:
            records[rec["input"]] = rec
    return records


class _Manifest:
    """The manifest in memory, written whole under a temporary name and renamed after each change."""

    def __init__(self, path: Path, order: Sequence[str]):
        self.path, self.order = path, list(order)
        self.records = read_manifest(path)

    def complete(self, item: Item) -> dict | None:
        """The earlier line of an input done with the same outputs, all still there."""
        rec = self.records.get(item.input)
        if rec is None or rec.get("status") not in ("done", "skipped") or rec.get("output") != item.output:
            return None
        return rec if all(p.exists() for p in item.finals().values()) else None

    def put(self, rec: dict) -> None:
        self.records[rec["input"]] = rec
        ours = [self.records[i] for i in self.order if i in self.records]
        others = [r for i, r in self.records.items() if i not in set(self.order)]  # earlier batches' inputs stay
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in ours + others))
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


def _drive(pool, todo: list[Item], finish: Callable[[dict], bool], stop: threading.Event) -> tuple[bool, list[Item]]:
    """Keep ``pool.slots`` videos running until ``todo`` is done, ``finish`` says to take no new
    one (a full disk) or ``stop`` is set; returns (interrupted, the items not done nor failed)."""
    queue, running, unfinished = list(todo), {}, []
    halted = interrupted = False
    while queue or running:
        try:
            while queue and not halted and not stop.is_set() and len(running) < pool.slots:
                item = queue.pop(0)
                running[pool.submit(item)] = item
            if not running:
                break
            ready = pool.wait(list(running), 0.5)
        except KeyboardInterrupt:  # no signal handler installed (a library call): stop as for one
            stop.set()
            ready = []
        if stop.is_set() and not interrupted:
            interrupted = halted = True
            pool.cancel(list(running))
        for handle in ready:
            item = running.pop(handle)
            rec = pool.result(handle, item)
            if rec["status"] == "interrupted":
                unfinished.append(item)
            elif not finish(rec):
                halted = True
    left = unfinished + queue
    return interrupted or (stop.is_set() and bool(left)), left


def _check(cluster: str | None, jobs: int, retries: int, cpus_per_task: float) -> None:
    if cluster is not None and cluster != "ray" and not cluster.startswith("ray://"):
        raise RtsegError(f"--cluster {cluster!r} is not allowed; use ray (a local instance, or RAY_ADDRESS) "
                         "or ray://HOST:PORT")
    if jobs < 1:
        raise RtsegError(f"--jobs {jobs} is not allowed; use >= 1")
    if retries < 0 or cpus_per_task < 0:
        raise RtsegError(f"--retries {retries} / --cpus-per-task {cpus_per_task}: use >= 0")


def run_batch(inputs: Sequence[str | Path], output_dir: str | Path, options: BatchOptions = BatchOptions(), *,
              cluster: str | None = None, jobs: int = 1, cpus: int | None = None, cpus_per_task: float = 0,
              retries: int = 3, stop: threading.Event | None = None,
              on_start: Callable[[int, int], None] | None = None,
              on_frame: Callable[[str, int], None] | None = None,
              on_done: Callable[[dict], None] | None = None) -> BatchResult:
    """Segment every video of ``inputs`` (:func:`find_inputs`) into ``output_dir`` (:func:`plan`).

    ``cluster`` None: here, ``jobs`` videos at once (1: one after another, each pipelined);
    ``"ray"`` or ``"ray://HOST:PORT"``: Ray tasks (:class:`rtseg.batch.pools.RayPool`: ``cpus``
    for a local instance, ``cpus_per_task``, ``retries`` for killed workers). Inputs done by an
    earlier run (by the manifest and their files) are ``skipped``. ``stop`` (set it from a signal
    handler) ends the batch keeping what is complete. ``on_start(inputs, to_do)``,
    ``on_frame(input, frames)`` (local runs only) and ``on_done(line)`` report progress."""
    _check(cluster, jobs, retries, cpus_per_task)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = plan(find_inputs(inputs, exclude=out), out, masks=options.masks, stats=options.stats)
    manifest = _Manifest(out / MANIFEST, [i.input for i in items])
    stop = stop or threading.Event()
    t0 = time.perf_counter()
    records: dict[str, dict] = {}
    state = {"disk_full": False}

    def finish(rec: dict) -> bool:
        records[rec["input"]] = rec
        full = rec["status"] == "failed" and (rec.get("error") or "").startswith(DISK_FULL)
        try:
            manifest.put(rec)
        except OSError as exc:  # the manifest itself could not be written: nothing more can be recorded
            rec.update(status="failed", error=f"{DISK_FULL if exc.errno == errno.ENOSPC else 'manifest'}: {exc.strerror}")
            full = True
        if on_done is not None:
            on_done(rec)
        state["disk_full"] |= full
        return not full

    todo = []
    for item in items:
        earlier = manifest.complete(item)
        if earlier is None:
            todo.append(item)
        else:
            finish({**earlier, "status": "skipped", "error": None})
    if on_start is not None:
        on_start(len(items), len(todo))
    if cluster is None:
        from rtseg.fleet.pools import LocalPool

        pool = LocalPool(options, jobs=jobs, stop=stop, on_frame=on_frame)
    else:
        from rtseg.fleet.pools import RayPool

        pool = RayPool(options, cluster, cpus=cpus, cpus_per_task=cpus_per_task, retries=retries)
    try:
        interrupted, left = _drive(pool, todo, finish, stop)
    finally:
        pool.close()
    return BatchResult([records[i.input] for i in items if i.input in records], manifest.path,
                       time.perf_counter() - t0, interrupted=interrupted, disk_full=state["disk_full"],
                       not_started=[i.input for i in left])


def batch(inputs: Sequence[str | Path], output_dir: str | Path, *, masks: bool = False, stats: bool = False,
          cluster: str | None = None, jobs: int = 1, cpus: int | None = None, cpus_per_task: float = 0,
          retries: int = 3, stop: threading.Event | None = None, **options: Any) -> BatchResult:
    """``rtseg.batch(inputs, output_dir, **options)``: :func:`run_batch` with ``rtseg run``'s options
    by name, as :func:`rtseg.stream` takes them (``weights``, ``runtime``, ``classes``, ``normalize``,
    ``output_name``, ``stride``, ``temporal``, ...); ``masks``/``stats``: also each video's class-id
    PNGs / per-frame class shares beside its output. A bad option raises one line at the call."""
    return run_batch(inputs, output_dir, BatchOptions.of(masks=masks, stats=stats, **options), cluster=cluster,
                     jobs=jobs, cpus=cpus, cpus_per_task=cpus_per_task, retries=retries, stop=stop)
