"""The video pipeline: read -> transform -> infer -> post -> write.

Pipelined, each stage but the last runs in its own thread and hands packets to the next
through a bounded ``queue.Queue`` (back-pressure: a slow stage stalls the ones before it
instead of letting memory grow). The write stage runs in the calling (main) thread, because
OpenCV windows must live there and because that is where Ctrl-C arrives. A sentinel marks
the end of the stream; a stop ``Event`` ends every stage within ~0.1 s (the queue timeout).
One thread per stage and FIFO queues keep the frame order; a stage with several workers (the
infer stage of a multi-stream engine) lets its packets out in index order. Sequential mode runs
the very same stage functions one after another in the calling thread.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence


from rtseg.errors import RtsegError
from rtseg.machine import since_process_start
from rtseg.pipeline.packet import Packet
from rtseg.pipeline.sources import Source
from rtseg.pipeline.stages import Stage, engine_stages, post_workers_for
from rtseg.pipeline.threads import Channel, Stopped, Turns, get, put, switch_interval
from rtseg.pipeline.timing import StageStats, Timings
from rtseg.pipeline.trace import Trace

__all__ = ["Stage", "engine_stages", "post_workers_for", "run", "RunResult", "StageError", "StopRun", "Sink"]

log = logging.getLogger(__name__)

_JOIN_TIMEOUT = 2.0  # s per thread at shutdown; a stage stuck in a long call is left (daemon) and logged


class StageError(RuntimeError):
    """A stage failed with an internal error. ``str()`` is the one line the CLI prints."""

    def __init__(self, stage: str, exc: BaseException):
        super().__init__(f"{stage} stage failed: {type(exc).__name__}: {exc}")
        self.stage = stage


class StopRun(Exception):
    """Raised by a sink (the window's q key) to end the run early and cleanly."""


class Sink:
    """Where pictures go (the write stage). ``close`` runs once, however the run ended."""

    takes_i420 = False  # True: accepts pictures in I420 as well as BGR (see engine_stages)

    def write(self, packet: Packet) -> None:
        raise NotImplementedError

    def close(self, *, completed: bool, interrupted: bool) -> None:
        pass


@dataclass
class RunResult:
    frames: int  # frames written
    wall_s: float
    completed: bool  # reached the end of the stream (or --max-frames)
    interrupted: bool  # Ctrl-C
    stopped_by_user: bool  # the window's q key
    dropped: int  # live sources: stale frames skipped
    stages_ms: dict[str, dict[str, float]]
    latency_ms: dict[str, float] = field(default_factory=dict)  # capture (or read start) -> written, mean/p50/p95/p99
    first_frame_s: float | None = None  # s from the process's start to the first frame written (None: none written)
    steady_fps: float | None = None  # the rate once the pipeline is full (see STEADY_FROM; None: < 2 frames)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


_END = object()  # end-of-stream sentinel


def run(source: Source, stages: Sequence[Stage], sink: Sink, *, sequential: bool = False, queue_size: int = 4,
        max_frames: int | None = None, timings: Timings | None = None,
        on_frame: Callable[[int, int], None] | None = None, trace: Trace | None = None) -> RunResult:
    """Read every frame of ``source`` (or ``max_frames``), run ``stages`` on it and ``sink.write``
    the result, in order. ``on_frame(frames_written, dropped)`` is called after each write (from the
    calling thread). ``trace``: record the run there (:mod:`rtseg.pipeline.trace`). Raises :class:`StageError` (or the stage's RtsegError, prefixed with the stage's
    name) when a stage fails; Ctrl-C returns a result with ``interrupted`` set. The sink is closed
    in every case; so is the source."""
    if queue_size < 1:
        raise RtsegError(f"--queue-size must be >= 1; got {queue_size}")
    if max_frames is not None and max_frames < 1:
        raise RtsegError(f"--max-frames must be >= 1; got {max_frames}")
    names = ["read", *(s.name for s in stages), "write"]
    timings = timings or Timings(names)
    runner = _Sequential if sequential else _Pipelined
    return runner(source, stages, sink, queue_size, max_frames, timings, on_frame, trace).go()


# steady_fps counts from the STEADY_FROM-th frame written (from the first in runs of fewer than twice
# as many): the first few come out faster than the pipeline's rate, as the stages before the network
# worked on them while the first frame was inferred (on a 221-frame yolo26n-sem run, counting from the
# first gave 2% more).
STEADY_FROM = 10


class _Run:
    def __init__(self, source, stages, sink, queue_size, max_frames, timings, on_frame, trace):
        self.source, self.stages, self.sink, self.trace = source, list(stages), sink, trace
        self.queue_size, self.max_frames, self.timings, self.on_frame = queue_size, max_frames, timings, on_frame
        self.latency = StageStats()
        self.first_frame_s: float | None = None
        self.t_first = self.t_last = 0.0  # perf_counter at the first and the last frame written
        self.t_steady = 0.0  # perf_counter at the STEADY_FROM-th frame written
        self.written = 0
        self.stop = threading.Event()
        self.failure: tuple[str, BaseException] | None = None
        self._fail_lock = threading.Lock()

    def fail(self, stage: str, exc: BaseException) -> None:
        """Record the first failure and stop everything."""
        with self._fail_lock:
            if self.failure is None:
                self.failure = (stage, exc)
                log.debug("%s stage failed", stage, exc_info=exc)
        self.stop.set()

    def read_one(self, index: int) -> Packet | None:
        if self.max_frames is not None and index >= self.max_frames:
            return None
        c0 = time.thread_time() if self.trace is not None else 0.0
        t0 = time.perf_counter()
        frame = self.source.read(self.stop)
        if frame is None:
            return None
        t1 = time.perf_counter()
        ms = (t1 - t0) * 1e3
        self.timings.add("read", ms)
        if self.trace is not None:
            self.trace.slice("read", t0, t1, frame=index, cpu_ms=round((time.thread_time() - c0) * 1e3, 3))
        return Packet(index=index, name=self.source.frame_name(index), frame=frame, t_read=t0, timings={"read": ms},
                      source_index=self.source.position(), epoch=self.source.reconnects,
                      timestamp=self.source.timestamp(), t_capture=self.source.captured_at())

    def apply(self, stage: Stage, p: Packet) -> None:
        c0 = time.thread_time() if self.trace is not None else 0.0  # the thread's CPU time: see trace.py
        t0 = time.perf_counter()
        ms = stage.fn(p)
        t1 = time.perf_counter()
        ms = ms if ms is not None else (t1 - t0) * 1e3
        self.timings.add(stage.name, ms)
        p.timings[stage.name] = ms
        if self.trace is not None:
            self.trace.slice(stage.name, t0, t1, frame=p.index, cpu_ms=round((time.thread_time() - c0) * 1e3, 3))

    def write(self, p: Packet) -> None:
        c0 = time.thread_time() if self.trace is not None else 0.0
        t0 = time.perf_counter()
        self.sink.write(p)
        t1 = time.perf_counter()
        self.timings.add("write", (t1 - t0) * 1e3)
        if self.trace is not None:
            self.trace.slice("write", t0, t1, frame=p.index, cpu_ms=round((time.thread_time() - c0) * 1e3, 3))
        self.latency.add((t1 - (p.t_capture if p.t_capture is not None else p.t_read)) * 1e3)
        if self.written == 0:
            self.first_frame_s, self.t_first = since_process_start(), t1
        if self.written == STEADY_FROM - 1:
            self.t_steady = t1
        self.t_last = t1
        self.written += 1
        if self.on_frame is not None:
            self.on_frame(self.written, self.source.dropped)

    def go(self) -> RunResult:
        t0 = time.perf_counter()
        completed = interrupted = by_user = False
        try:
            completed = self.body()
        except KeyboardInterrupt:
            interrupted = True
            log.info("interrupted: stopping every stage")
        except StopRun:
            by_user = True
        except Exception as exc:  # the write stage (the sink) failed in this thread
            self.fail("write", exc)
        finally:
            self.stop.set()
            self.shutdown()
            wall = time.perf_counter() - t0
            try:
                self.sink.close(completed=completed and self.failure is None, interrupted=interrupted or by_user)
            finally:
                self.source.close()
        if self.failure is not None:
            stage, exc = self.failure
            if isinstance(exc, RtsegError):  # bad input found mid-run (e.g. a truncated file): exit 2
                raise RtsegError(f"{stage} stage: {exc}") from exc
            raise StageError(stage, exc) from exc
        return RunResult(frames=self.written, wall_s=wall, completed=completed, interrupted=interrupted,
                         stopped_by_user=by_user, dropped=self.source.dropped, stages_ms=self.timings.summary(),
                         latency_ms=self.latency.summary(99), first_frame_s=self.first_frame_s,
                         steady_fps=self.steady_fps())

    def steady_fps(self) -> float | None:
        """Frames after the STEADY_FROM-th over the time from it to the last (after the first, from the
        first, in shorter runs); None under 2 frames."""
        if self.written >= 2 * STEADY_FROM and self.t_last > self.t_steady:
            return (self.written - STEADY_FROM) / (self.t_last - self.t_steady)
        if self.written > 1 and self.t_last > self.t_first:
            return (self.written - 1) / (self.t_last - self.t_first)
        return None

    def body(self) -> bool:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass


class _Sequential(_Run):
    """One thread: the same stages, one after another, frame by frame."""

    def body(self) -> bool:
        index = 0
        while True:
            stage = "read"
            try:
                p = self.read_one(index)
                if p is None:
                    return True
                for s in self.stages:
                    stage = s.name
                    self.apply(s, p)
            except (KeyboardInterrupt, StopRun):
                raise
            except Exception as exc:
                self.fail(stage, exc)
                return False
            self.write(p)  # its failure is the write stage's, handled in go()
            index += 1


class _Pipelined(_Run):
    """A thread per stage up to post (more for a stage with several workers); the write stage
    in the calling thread."""

    def body(self) -> bool:
        switch_interval.enter()  # the GIL handed over sooner: see threads.py
        self.switched = True
        names = ["read", *(s.name for s in self.stages), "write"]  # queue i: names[i] -> names[i + 1]
        self.queues = [Channel(self.queue_size, f"{a} > {b}") for a, b in zip(names, names[1:])]
        self.threads = [threading.Thread(target=self._reader, name="rtseg-read", daemon=True)]
        for i, s in enumerate(self.stages):
            if s.workers < 1:
                raise RtsegError(f"stage {s.name} needs at least one worker; got {s.workers}")
            turns = Turns(s.workers) if s.workers > 1 else None
            for k in range(s.workers):
                self.threads.append(threading.Thread(target=self._worker, args=(s, self.queues[i], self.queues[i + 1], turns),
                                                     name=f"rtseg-{s.name}" + (f"-{k}" if turns else ""), daemon=True))
        for t in self.threads:
            t.start()
        last = self.queues[-1]
        while True:
            try:
                p = self._get(last)
            except Stopped:
                return False
            if p is _END:
                return self.failure is None
            self.write(p)

    def _get(self, q: Channel):
        return get(q, self.stop, self.trace)

    def _put(self, q: Channel, item) -> None:
        put(q, item, self.stop, self.trace)

    def _reader(self) -> None:
        index = 0
        try:
            while (p := self.read_one(index)) is not None:
                self._put(self.queues[0], p)
                index += 1
            self._put(self.queues[0], _END)
        except Stopped:
            pass
        except Exception as exc:
            self.fail("read", exc)

    def _worker(self, stage: Stage, inbox: Channel, outbox: Channel, turns: Turns | None) -> None:
        try:
            while (p := self._get(inbox)) is not _END:
                self.apply(stage, p)
                if turns is None:
                    self._put(outbox, p)
                    continue
                turns.wait(p.index, self.stop)
                try:
                    self._put(outbox, p)
                finally:
                    turns.done()
            if turns is not None:
                self._put(inbox, _END)  # for the other workers of this stage
                if not turns.finished():
                    return  # the last one passes the end on, after every packet has gone
            self._put(outbox, _END)
        except Stopped:
            pass
        except Exception as exc:
            self.fail(stage.name, exc)

    def shutdown(self) -> None:
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for t in getattr(self, "threads", []):
            if t.ident is None:  # never started (a bad stage found while they were being made)
                continue
            t.join(timeout=max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("thread %s did not stop within %.0f s (stuck in a long call); leaving it", t.name,
                            _JOIN_TIMEOUT)
        if getattr(self, "switched", False):
            switch_interval.exit()
