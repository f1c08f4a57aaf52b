"""A run as a Chrome trace: the Trace Event JSON that Perfetto (ui.perfetto.dev) and
chrome://tracing open, as PyTorch's profiler writes.

One track per thread (read, transform, infer, post, and write in the main thread), a slice per
frame per stage ("ph": "X", microseconds), each queue wait that blocked as its own slice
("wait get" / "wait put", named by the queue), and each queue's depth as a counter ("ph": "C").
A stage's slice carries its thread's CPU time (``cpu_ms``): wall time beyond it is time the
thread was not running — waiting for the GIL, for the device, or for I/O. CPython does not show
GIL waits themselves; a GIL-starved stage shows as slices far longer than their ``cpu_ms``.

Events are kept in memory (a list append, atomic under the GIL) and written once at the end;
the run pays nothing when no trace is asked for (the runner checks for None).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

__all__ = ["Trace"]

log = logging.getLogger(__name__)

MAX_EVENTS = 2_000_000  # ~20 a frame: 100,000 frames, some 300 MB at most; later events are dropped


class Trace:
    """Collects a run's events; :meth:`save` writes them. Several runs may share one trace,
    each under its own :meth:`begin` (a process group in the viewer), on one clock."""

    def __init__(self, name: str = "rtseg"):
        self.t0 = time.perf_counter()
        self._events: list[tuple] = []  # (ph, pid, tid, name, t_s, dur_s, args)
        self._threads: dict[tuple[int, int], str] = {}  # (pid, thread ident) -> track name
        self._processes = {1: name}
        self.pid = 1
        self.full = False

    def begin(self, name: str) -> None:
        """Put the events that follow under a new process group ``name`` (the next run)."""
        self.pid = (max(self._processes) + 1) if self._events else self.pid
        self._processes[self.pid] = name

    def _track(self) -> int:
        tid = threading.get_ident()
        key = (self.pid, tid)
        if key not in self._threads:
            t = threading.current_thread()
            self._threads[key] = "write (main thread)" if t is threading.main_thread() else t.name
        return tid

    def _add(self, event: tuple) -> None:
        if len(self._events) >= MAX_EVENTS:
            if not self.full:
                self.full = True
                log.warning("trace: %d events; the rest of the run is not traced", MAX_EVENTS)
            return
        self._events.append(event)

    def slice(self, name: str, t0: float, t1: float, **args) -> None:
        """A slice ``name`` on the calling thread's track from ``t0`` to ``t1`` (perf_counter s)."""
        self._add(("X", self.pid, self._track(), name, t0, t1 - t0, args))

    def counter(self, name: str, t: float, value: float) -> None:
        """The counter ``name`` is ``value`` from ``t`` (perf_counter s) on."""
        self._add(("C", self.pid, 0, name, t, 0.0, {"depth": value}))

    def events(self) -> list[dict]:
        """The Trace Event list: metadata (process and thread names) first, then the events."""
        us = 1e6
        out: list[dict] = [{"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}}
                           for pid, name in self._processes.items()]
        order = {"read": 0, "transform": 1, "infer": 2, "post": 3, "write": 9}
        for (pid, tid), name in self._threads.items():
            stage = name.removeprefix("rtseg-").split("-")[0].split(" ")[0]
            out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
            out.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                        "args": {"sort_index": order.get(stage, 5)}})
        for ph, pid, tid, name, t, dur, args in self._events:
            e = {"ph": ph, "name": name, "pid": pid, "tid": tid, "ts": round((t - self.t0) * us, 3), "args": args}
            if ph == "X":
                e["dur"] = round(dur * us, 3)
            out.append(e)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the trace to ``path`` as JSON (``{"traceEvents": [...]}``)."""
        path = Path(path)
        path.write_text(json.dumps({"traceEvents": self.events(), "displayTimeUnit": "ms",
                                    "otherData": {"producer": "rtseg", "pid": os.getpid()}}))
        return path
