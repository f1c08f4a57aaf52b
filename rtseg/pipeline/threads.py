"""How the pipeline's threads hand packets over: bounded queues waited on with a timeout (so a
stop is seen within ``TICK``), in-order release from a stage's several workers, and the GIL
switch interval while a pipelined run goes. Used by :mod:`rtseg.pipeline.runner`."""
from __future__ import annotations

import queue
import sys
import threading
import time

from rtseg.pipeline.trace import Trace

__all__ = ["TICK", "Stopped", "Channel", "get", "put", "Turns", "switch_interval"]

TICK = 0.1  # s: how long a blocked get/put waits before re-checking the stop event
_WAIT_MIN_S = 20e-6  # a get/put that took longer than this blocked: traced as a wait slice

# The GIL switch interval during a pipelined run (None: leave CPython's 5 ms). A GPU engine's
# infer thread holds the GIL while Python launches kernels; any other stage's thread that comes
# back from native work (decoding, encoding, a numpy call) waits up to this long for the GIL, each
# time, several times a frame. In benchmarks/device_sim.py (a simulated eager GPU, 5 ms of GIL-held
# launches, beside real stages at 256x512) single runs went from 0.69x of the slowest stage with
# 5 ms to 0.84x with 1 ms and 0.94x with 0.2 ms; on a loaded 2-core machine the figures are noisy.
SWITCH_INTERVAL_S: float | None = 0.0005


class Stopped(Exception):
    """The stop event was set while waiting."""


class Channel(queue.Queue):
    """A bounded queue from one stage to the next; ``label`` ("read > transform") names it in a trace."""

    def __init__(self, maxsize: int, label: str):
        super().__init__(maxsize=maxsize)
        self.label = label


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise Stopped
        try:
            return q.get(timeout=TICK)
        except queue.Empty:
            continue


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise Stopped
        try:
            q.put(item, timeout=TICK)
            return
        except queue.Full:
            continue


def get(q: Channel, stop: threading.Event, trace: Trace | None = None):
    """The next item of ``q``; raises :class:`Stopped` once ``stop`` is set. Traced: the time it
    blocked (a "wait get" slice) and the queue's depth after."""
    if trace is None:
        return _get(q, stop)
    t0 = time.perf_counter()
    item = _get(q, stop)
    t1 = time.perf_counter()
    if t1 - t0 > _WAIT_MIN_S:
        trace.slice(f"wait get {q.label}", t0, t1)
    trace.counter(q.label, t1, q.qsize())
    return item


def put(q: Channel, item, stop: threading.Event, trace: Trace | None = None) -> None:
    """Put ``item`` on ``q`` (blocking while it is full); as :func:`get` otherwise."""
    if trace is None:
        return _put(q, item, stop)
    t0 = time.perf_counter()
    _put(q, item, stop)
    t1 = time.perf_counter()
    if t1 - t0 > _WAIT_MIN_S:
        trace.slice(f"wait put {q.label}", t0, t1)
    trace.counter(q.label, t1, q.qsize())


class Turns:
    """Lets packets out of a stage's workers in index order: a worker done with packet i waits
    until packet i-1 has gone. Also counts the workers still running, so that the last one
    passes the end of the stream on."""

    def __init__(self, workers: int):
        self.next, self.running = 0, workers
        self.cond = threading.Condition()

    def wait(self, index: int, stop: threading.Event) -> None:
        with self.cond:
            while self.next != index:
                if stop.is_set():
                    raise Stopped
                self.cond.wait(TICK)

    def done(self) -> None:
        with self.cond:
            self.next += 1
            self.cond.notify_all()

    def finished(self) -> bool:
        """A worker has seen the end; True for the last one."""
        with self.cond:
            self.running -= 1
            return self.running == 0


class _SwitchInterval:
    """Sets the GIL switch interval while any pipelined run goes and restores the one before
    when the last ends (runs in several threads at once share the process's setting)."""

    def __init__(self):
        self.lock, self.runs, self.before = threading.Lock(), 0, None

    def enter(self) -> None:
        with self.lock:
            self.runs += 1
            if self.runs == 1 and SWITCH_INTERVAL_S is not None:
                self.before = sys.getswitchinterval()
                sys.setswitchinterval(SWITCH_INTERVAL_S)

    def exit(self) -> None:
        with self.lock:
            self.runs -= 1
            if self.runs == 0 and self.before is not None:
                sys.setswitchinterval(self.before)
                self.before = None


switch_interval = _SwitchInterval()
