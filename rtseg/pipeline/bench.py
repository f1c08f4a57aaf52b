"""``rtseg bench`` without the printing: every stage, the pipelined app, the same work run
sequentially, and the engine alone, in one run on the same frames.

With no source it benchmarks a 1024x2048 video made from the bundled real street frame, panned
over time (a crop window sliding across a 1.25x enlargement), encoded once to a temporary mp4 so
that the read stage measures real decoding.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from rtseg import machine
from rtseg.engines.base import Engine, infer_calls
from rtseg.errors import RtsegError, redact
from rtseg.pipeline.app import segment
from rtseg.pipeline.context import Run
from rtseg.pipeline.sinks import VideoSink, encoder_threads
from rtseg.pipeline.sources import Source
from rtseg.pipeline.timing import STAGES, Timings, json_stages
from rtseg.pipeline.trace import Trace

__all__ = ["pan_frames", "make_panned_video", "bench"]

log = logging.getLogger(__name__)


def pan_frames(image: np.ndarray, n: int, *, size: tuple[int, int] = (1024, 2048), zoom: float = 1.25):
    """Yield ``n`` BGR frames of ``size`` (h, w): a window sliding over ``image`` enlarged by ``zoom``,
    left to right and back, with a slower vertical sway (a camera panning along the street)."""
    h, w = size
    big = cv2.resize(image, (int(w * zoom), int(h * zoom)), interpolation=cv2.INTER_LINEAR)
    span_x, span_y = big.shape[1] - w, big.shape[0] - h
    for i in range(n):
        t = i / max(1, n - 1)
        x = int(span_x * (1 - abs(1 - 2 * t)))  # 0 -> span -> 0
        y = int(span_y * 0.5 * (1 - np.cos(np.pi * t)))  # 0 -> span, eased
        yield np.ascontiguousarray(big[y:y + h, x:x + w])


def make_panned_video(path: str | Path, image_path: str | Path, n: int, *, fps: float = 30.0,
                      size: tuple[int, int] = (1024, 2048)) -> Path:
    """Encode ``n`` panned frames of ``image_path`` to ``path`` (mp4v). Returns ``path``."""
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise RtsegError(f"cannot read the benchmark frame {image_path}")
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    if not writer.isOpened():
        raise RtsegError(f"cannot write {path}")
    for frame in pan_frames(image, n, size=size):
        writer.write(frame)
    writer.release()
    return path


def _engine_alone(engine: Engine, batches: list[np.ndarray], n: int) -> float:
    """Frames per second of ``engine.infer`` alone over ``n`` calls (cycling over ``batches``),
    made from ``engine.streams`` threads at once: a one-stream engine in the calling thread, a
    multi-stream one with every stream busy (what it can do with no other work running)."""
    return n / infer_calls(engine, batches, n, name="rtseg-bench", threads=0 if engine.streams == 1 else None)


def _median(values: list[float]) -> float:
    return float(np.median(values))


def bench(run: Run, open_source: Callable[[], Source], *, frames: int = 100, rounds: int = 3,
          engine: Engine | None = None, warmup: int = 5, workdir: str | Path | None = None,
          on_phase: Callable[[str], None] | None = None, trace: Trace | None = None) -> dict:
    """Measure the opened ``run`` on the first ``frames`` frames of the source ``open_source()``
    opens (called once per measured run; the run's own source gives the frames "engine alone" is
    timed on, and is closed). Returns the ``rtseg bench --json`` dict (docs/architecture.md) with
    ``rounds``. ``trace``: record the first round's sequential and pipelined runs there (--trace).
    The temporal filter and queues are the run's (resolved by ``open_run``); "engine alone" stays
    ids only.

    ``engine``: the same network loaded with one stream, for the sequential runs and "engine
    alone" when ``run.engine`` has several (Engine.streams) for the pipelined runs: the one-stream
    engine puts every core on one frame (its fastest single frame). A fourth measurement then
    gives the multi-stream engine alone with all its streams busy (``engine_streams``), the
    ceiling the pipelined runs approach; the JSON reports both ratios.

    Each of ``rounds`` rounds runs the measurements (sequential, pipelined, engine alone, and
    the multi-stream engine alone) back to back, in an order that rotates from round to round, so
    that a burst of load from another process on a shared machine lands on all of them rather
    than on one. The fps figures are medians over the rounds; so are the ratios, each taken within
    its round. Both runs write a real mp4 (into ``workdir`` or a temporary folder): encoding counts.
    ``stages_ms`` pools the sequential runs, where each stage is timed without the others
    competing for the cores.
    """
    if frames < 1:
        raise RtsegError(f"--frames must be >= 1; got {frames}")
    if rounds < 1:
        raise RtsegError(f"--rounds must be >= 1; got {rounds}")
    say = on_phase or (lambda text: log.info(text))
    piped = run.engine
    engine = engine or piped
    streams, temporal = piped.streams, run.temporal
    measured = replace(run, spec=replace(run.spec, max_frames=frames))
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-", dir=workdir) as tmp:
        src = run.source
        batches, source_size, desc = [], src.size, src.describe()
        try:
            while len(batches) < min(frames, 32) and (frame := src.read()) is not None:
                batches.append(engine.preprocess([frame]))  # the same frames the runs start with
        finally:
            src.close()
        if not batches:
            raise RtsegError(f"the source has no frames: {desc}")
        say(f"warm-up ({warmup} engine calls)")
        _engine_alone(engine, batches, warmup)
        if piped is not engine:
            _engine_alone(piped, batches, warmup * streams)

        seq_timings = Timings((*STAGES[:3], "temporal", *STAGES[3:]) if temporal else STAGES)  # pooled over rounds
        order = ["sequential", "pipelined", "engine_only"] + (["engine_streams"] if streams > 1 else [])
        fps: dict[str, list[float]] = {mode: [] for mode in order}
        walls: dict[str, list[float]] = {"sequential": [], "pipelined": []}
        latency, n = [], 0
        for r in range(rounds):
            for mode in order[r % len(order):] + order[:r % len(order)]:
                say(f"round {r + 1}/{rounds}: {mode.replace('_', ' ')}")
                if mode in ("engine_only", "engine_streams"):
                    alone = engine if mode == "engine_only" else piped
                    fps[mode].append(_engine_alone(alone, batches, n or min(frames, 32)))
                    continue
                one = replace(measured, source=open_source())
                sink = VideoSink(Path(tmp) / f"{mode}.mp4", one.source.fps,
                                 threads=encoder_threads(pipelined=mode == "pipelined"))
                if trace is not None and r == 0:
                    trace.begin(f"{mode} run")
                res = segment(one, sink, engine=engine if mode == "sequential" else piped,
                              sequential=mode == "sequential", trace=trace if r == 0 else None,
                              timings=seq_timings if mode == "sequential" else None).result
                n = res.frames
                fps[mode].append(res.fps)
                walls[mode].append(res.wall_s)
                if mode == "pipelined":
                    latency.append(res.latency_ms["p50"])

    report = _report(engine, piped, fps, walls, latency, seq_timings, n=n, rounds=rounds, source=desc,
                     source_size=source_size)
    report["temporal"] = "off" if temporal is None else "on"  # the filter in the sequential and pipelined runs
    return report


def _report(engine: Engine, piped: Engine, fps: dict[str, list[float]], walls: dict[str, list[float]],
            latency: list[float], seq_timings: Timings, *, n: int, rounds: int, source: str,
            source_size: tuple[int, int]) -> dict:
    """The ``rtseg bench --json`` dict from the rounds' measurements: medians, and the ratios'
    medians (each taken within its round)."""
    def ratio(a: str, b: str) -> float:
        return round(_median([x / y for x, y in zip(fps[a], fps[b])]), 3)

    result = {
        "engine": engine.name, "device": engine.device, "model": engine.meta.model, "source": redact(source),
        "source_size": list(source_size), "input_size": list(engine.input_size), "frames": n,
        **json_stages({name: {k: round(v, 3) for k, v in s.items()} for name, s in seq_timings.summary().items()}),
        "pipelined": {"fps": round(_median(fps["pipelined"]), 3), "wall_s": round(_median(walls["pipelined"]), 3),
                      "latency_ms_p50": round(_median(latency), 3)},
        "sequential": {"fps": round(_median(fps["sequential"]), 3), "wall_s": round(_median(walls["sequential"]), 3)},
        "engine_only": {"fps": round(_median(fps["engine_only"]), 3)},
        "rounds": {"count": rounds, "fps": {k: [round(v, 3) for v in vs] for k, vs in fps.items()},
                   "pipelined_vs_sequential": ratio("pipelined", "sequential"),
                   "pipelined_vs_engine_only": ratio("pipelined", "engine_only")},
    }
    result["streams"] = piped.streams  # of the pipelined runs' engine
    result["precision"] = getattr(piped, "precision", None)  # fp32, bf16, fp16 (None: the engine does not say)
    result["machine"] = machine.describe()  # figures differ by machine: CPU, flags, cores, GPUs, library versions
    if piped.streams > 1:
        result["engine_streams"] = {"fps": round(_median(fps["engine_streams"]), 3), "streams": piped.streams}
        result["rounds"]["pipelined_vs_engine_streams"] = ratio("pipelined", "engine_streams")
    return result
