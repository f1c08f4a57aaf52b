"""Per-stage timing: how long each stage spent working on each frame (not waiting on queues).

Memory is bounded: a running count and sum give the exact mean; the percentiles come from the
most recent ``window`` samples (a ring buffer), so a webcam left running for hours does not grow.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterable, Iterator

import numpy as np

__all__ = ["StageStats", "Timings", "STAGES", "json_stages"]

STAGES = ("read", "transform", "infer", "post", "write")


def json_stages(stages_ms: dict) -> dict:
    """The stage times as the JSON documents give them (docs/architecture.md): ``stages_ms`` with
    exactly the five :data:`STAGES`, and the temporal filter's stage, when it ran, beside them as
    ``temporal_ms`` (outside checks read ``stages_ms`` by those five names)."""
    out = {"stages_ms": {k: v for k, v in stages_ms.items() if k in STAGES}}
    if "temporal" in stages_ms:
        out["temporal_ms"] = stages_ms["temporal"]
    return out


class StageStats:
    """Durations of one stage, in milliseconds."""

    def __init__(self, window: int = 10_000):
        self._ring = np.zeros(window, np.float64)  # last `window` samples, ms
        self._n = 0  # samples ever added
        self._sum = 0.0  # ms
        self._lock = threading.Lock()  # one writer per stage, but summaries are read from the main thread

    def add(self, ms: float) -> None:
        with self._lock:
            self._ring[self._n % len(self._ring)] = ms
            self._n += 1
            self._sum += ms

    @property
    def count(self) -> int:
        return self._n

    def summary(self, *more: int) -> dict[str, float]:
        """{"mean", "p50", "p95"} in ms, and a "pNN" for each of ``more`` (NaN when there are no samples)."""
        with self._lock:
            n = self._n
            recent = self._ring[: min(n, len(self._ring))].copy()
            total = self._sum
        keys = ["p50", "p95", *(f"p{q}" for q in more)]
        if n == 0:
            return {"mean": float("nan"), **{k: float("nan") for k in keys}}
        values = np.percentile(recent, [50, 95, *more])
        return {"mean": total / n, **{k: float(v) for k, v in zip(keys, values)}}


class Timings:
    """One :class:`StageStats` per named stage."""

    def __init__(self, names: Iterable[str] = STAGES, window: int = 10_000):
        self.stages = {name: StageStats(window) for name in names}

    def add(self, name: str, ms: float) -> None:
        self.stages[name].add(ms)

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        """``with timings.time("infer"): ...`` adds the block's wall time (perf_counter) to ``name``
        when the block completes (a failed call is not a sample)."""
        t0 = time.perf_counter()
        yield
        self.add(name, (time.perf_counter() - t0) * 1e3)

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: stats.summary() for name, stats in self.stages.items()}
