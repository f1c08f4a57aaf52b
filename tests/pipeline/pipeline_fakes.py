"""Fakes for the pipeline tests: an engine, sources, a recording sink and a simulated camera.

Frames carry their index in their pixels (value = index % 251), and the fake engine's class ids
are the pixel values, so a sink can tell whether a picture and its ids belong to the frame."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from rtseg.engines.base import Engine
from rtseg.meta import ModelMeta
from rtseg.pipeline.packet import Look, Packet
from rtseg.pipeline.runner import Sink
from rtseg.pipeline.sources import Source


class Boom(Exception):
    """The injected fault."""


def marked_frame(index: int, size=(48, 64)) -> np.ndarray:
    return np.full((*size, 3), index % 251, np.uint8)


def frame_mark(frame: np.ndarray) -> int:
    return int(frame[0, 0, 0])


class FakeEngine(Engine):
    """ids = the blue channel, at half the frame size. ``fail`` = {method: frame number} raises
    Boom when that method sees that frame; ``delay`` = {method: seconds} per call (jitter tests)."""

    name = "fake"
    precision = "fp32"  # what it computes in, as real engines say (rtseg bench --json records it)

    def __init__(self, *, input_size=(24, 32), fail=None, delay=None, rng=None, streams=1):
        self.meta = ModelMeta(model="fake", num_classes=251, class_names=tuple(f"c{i}" for i in range(251)),
                              palette=tuple((i, 255 - i, (7 * i) % 256) for i in range(251)), input_size=input_size)
        self.input_size = input_size
        self.fail, self.delay, self.rng = fail or {}, delay or {}, rng or np.random.default_rng(0)
        self.calls = {"preprocess": 0, "infer": 0}
        self.streams = streams  # infer workers the pipeline runs
        self.inferring = self.most_at_once = 0  # infer calls running now, and at most
        self._lock = threading.Lock()

    def _step(self, method: str) -> None:
        with self._lock:
            n = self.calls[method]
            self.calls[method] += 1
        if self.fail.get(method) == n:
            raise Boom(f"injected fault in {method} at frame {n}")
        if method in self.delay:
            time.sleep(self.rng.uniform(0, self.delay[method]))  # jitter, so stages race each other

    def preprocess(self, frames):
        self._step("preprocess")
        return super().preprocess(frames)

    def infer(self, batch):
        with self._lock:
            self.inferring += 1
            self.most_at_once = max(self.most_at_once, self.inferring)
        try:
            self._step("infer")
            return batch[..., 0].copy()
        finally:
            with self._lock:
                self.inferring -= 1



class DeviceEngine(FakeEngine):
    """A GPU engine as the host sees it: ``infer`` holds the GIL for ``launch_ms`` (a pure-Python
    loop, as kernel launches are), then waits ``device_ms`` with it released (as a stream
    synchronise does). benchmarks/device_sim.py runs the same engine beside the real stages."""

    name = "device-sim"

    def __init__(self, launch_ms: float, device_ms: float, **kw):
        super().__init__(**kw)
        self.launch_s, self.device_s = launch_ms / 1e3, device_ms / 1e3

    def infer(self, batch):
        end = time.perf_counter() + self.launch_s
        while time.perf_counter() < end:  # bytecode: holds the GIL
            pass
        time.sleep(self.device_s)  # releases it
        return super().infer(batch)


def sleeping(stages, seconds: dict[str, float]):
    """``stages`` with a GIL-free sleep of ``seconds[name]`` added to those named (native work)."""
    from rtseg.pipeline.runner import Stage

    def slowed(fn, s):
        def run(p):
            time.sleep(s)
            return fn(p)
        return run

    return [Stage(st.name, slowed(st.fn, seconds[st.name]), st.workers) if st.name in seconds else st for st in stages]


def with_jitter(stages, seconds: float, names=("post",), rng=None):
    """``stages`` with a random sleep of up to ``seconds`` added to those in ``names`` (the
    engine's own delays cover transform and infer; post does not call the engine)."""
    from rtseg.pipeline.runner import Stage

    rng = rng or np.random.default_rng(1)

    def slowed(fn):
        def run(p):
            time.sleep(rng.uniform(0, seconds))
            return fn(p)
        return run

    return [Stage(s.name, slowed(s.fn), s.workers) if s.name in names else s for s in stages]


class FailingLook(Look):
    """A Look whose ``key()`` (read once per frame by the post stage) raises Boom at frame ``fail_at``."""

    def __init__(self, fail_at: int):
        super().__init__()
        self.fail_at, self.reads = fail_at, 0

    def key(self):
        self.reads += 1
        if self.reads - 1 == self.fail_at:
            raise Boom(f"injected fault in post at frame {self.fail_at}")
        return super().key()


class ListSource(Source):
    """``n`` marked frames; raises Boom at frame ``fail_at``; counts frames handed out."""

    def __init__(self, n: int, *, size=(48, 64), fail_at: int | None = None, fps: float = 25.0):
        self.name, self.fps, self.size, self.frame_count = "list", fps, size, n
        self.n, self.fail_at, self.given, self.closed = n, fail_at, 0, False

    def read(self, stop=None):
        if self.given == self.fail_at:
            raise Boom(f"injected fault in read at frame {self.given}")
        if self.given >= self.n:
            return None
        self.given += 1
        return marked_frame(self.given - 1, self.size)

    def close(self):
        self.closed = True


class RecordingSink(Sink):
    """Keeps (index, frame mark, ids mark) per packet; raises Boom at frame ``fail_at``;
    ``delay`` seconds per write (a slow encoder); ``interrupt_at`` raises KeyboardInterrupt as Ctrl-C would."""

    def __init__(self, *, fail_at=None, delay=0.0, interrupt_at=None, source: ListSource | None = None):
        self.seen: list[tuple[int, int, int]] = []
        self.packets: list[Packet] = []  # the packets themselves, for the few-frame tests that look inside
        self.fail_at, self.delay, self.interrupt_at, self.source = fail_at, delay, interrupt_at, source
        self.in_flight_max = 0  # frames read but not yet written, at its largest
        self.formats: set[str] = set()  # picture formats seen
        self.takes_i420 = True
        self.closed_with: dict | None = None

    def write(self, p: Packet) -> None:
        if len(self.seen) == self.fail_at:
            raise Boom(f"injected fault in write at frame {len(self.seen)}")
        if len(self.seen) == self.interrupt_at:
            raise KeyboardInterrupt
        if self.source is not None:
            self.in_flight_max = max(self.in_flight_max, self.source.given - len(self.seen))
        if self.delay:
            time.sleep(self.delay)
        self.seen.append((p.index, frame_mark(p.frame), int(p.ids[0, 0])))
        self.formats.add(p.picture_format)
        if len(self.packets) < 16:
            self.packets.append(p)

    def close(self, *, completed, interrupted):
        self.closed_with = {"completed": completed, "interrupted": interrupted}


class SimulatedCamera:
    """cv2.VideoCapture-like: delivers ``n`` marked frames at ``fps`` in real time (read() blocks
    until the next frame is due, as a device does), then reports end of stream."""

    def __init__(self, n: int, fps: float, size=(48, 64)):
        self.n, self.period, self.size = n, 1.0 / fps, size
        self.delivered = 0
        self.released = threading.Event()
        self._t0: float | None = None

    def read(self):
        if self.delivered >= self.n or self.released.is_set():
            return False, None
        if self._t0 is None:
            self._t0 = time.perf_counter()
        due = self._t0 + self.delivered * self.period
        time.sleep(max(0.0, due - time.perf_counter()))  # the device's frame clock
        self.delivered += 1
        return True, marked_frame(self.delivered - 1, self.size)

    def release(self):
        self.released.set()


def write_video(path: Path, n: int, *, size=(48, 64), fps: float = 12.0, fourcc: str = "mp4v") -> Path:
    """A real video file of ``n`` frames, each a flat grey of a different level (distinct after decoding)."""
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((h, w, 3), (i * 9) % 256, np.uint8))
    writer.release()
    return path


def count_frames(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(frames decoded, fps in the header, (h, w)) of a video file."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    fps = cap.get(cv2.CAP_PROP_FPS)
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape[:2]
    cap.release()
    return n, fps, shape


def fake_run(source, engine, queue_size: int = 4, look: Look | None = None, temporal=None, **spec):
    """An opened run (rtseg.pipeline.context.Run) over a fake source and engine, as open_run makes
    one: ``look`` the outputs' (None: the default look), ``temporal`` the resolved filter."""
    from rtseg.pipeline.context import Outputs, Run, RunSpec

    outputs = Outputs(view=look.view, alpha=look.alpha, legend=look.legend) if look is not None else Outputs()
    outputs = Outputs(**{**outputs.__dict__, **spec.pop("outputs", {})})
    return Run(RunSpec(outputs=outputs, **spec), source, engine, Path("fake.pt"), outputs, temporal, None, queue_size)
