"""What ``rtseg run`` and ``rtseg webcam`` do, as a library call: the outputs a run writes
(video or images, masks, class statistics, a window) assembled into one sink, the pipeline run
over them, and the run's summary. The CLI parses options, calls :func:`segment` and prints.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rtseg.engines.base import Engine
from rtseg.errors import RtsegError
from rtseg.pipeline.packet import Look
from rtseg.pipeline.runner import RunResult, engine_stages, run
from rtseg.pipeline.sinks import ImageSink, MaskSink, MultiSink, StatsSink, VideoSink, encoder_threads
from rtseg.pipeline.sources import IMAGE_SUFFIXES, Source
from rtseg.pipeline.trace import Trace
from rtseg.pipeline.temporal import TemporalConfig, resolve_temporal
from rtseg.pipeline.timing import json_stages
from rtseg.pipeline.window import WindowSink
from rtseg.viz import Legend, classes_table, palette_lut

__all__ = ["Outputs", "Written", "segment", "run_summary"]


@dataclass(frozen=True)
class Outputs:
    """What a run writes and shows."""

    output: Path | None = None  # a video, one image, or a folder of images (``images``)
    images: str | None = None  # None: ``output`` is a video; "file": one image; "folder": an image per frame
    masks: Path | None = None  # class-id PNGs and classes.json
    stats: Path | None = None  # per-frame class shares (JSON Lines)
    show: bool = False  # an OpenCV window
    view: str = "overlay"
    alpha: float = 0.5
    legend: bool = True
    codec: str = "auto"


@dataclass
class Written:
    """What a run wrote, for its report."""

    result: RunResult
    video: VideoSink | None
    images: ImageSink | None
    masks: MaskSink | None
    stats: StatsSink | None


def _image_suffix(source: Source, output: Path) -> str:
    """An image file's own suffix; for a folder, the input images' (PNG for video frames)."""
    if output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir():
        return output.suffix
    return source.image_suffix or ".png"


def segment(source: Source, engine: Engine, outputs: Outputs, *, sequential: bool = False, queue_size: int = 0,
            max_frames: int | None = None, on_frame: Callable[[int, int], None] | None = None,
            temporal: TemporalConfig | None = None, trace: Trace | None = None) -> Written:
    """Run the pipeline over ``source`` with ``engine`` and write ``outputs``; the sinks are
    closed (the video finalised) however the run ends. Raises as :func:`rtseg.pipeline.run`.
    ``temporal``: the temporal filter's config (--temporal on, or auto: see resolve_temporal), None
    for off. ``trace``: record the run there (rtseg.pipeline.trace; --trace)."""
    temporal = resolve_temporal(temporal, source=source, engine=engine)
    if temporal is not None and not engine.has_scores:  # before any output file is made
        raise RtsegError(engine.no_scores_reason())
    meta = engine.meta
    lut = palette_lut(meta.palette)
    o = outputs
    sinks = []
    video = images = masks = stats = None
    if o.output is not None and o.images is not None:
        images = ImageSink(o.output, folder=o.images == "folder", suffix=_image_suffix(source, o.output))
        sinks.append(images)
    elif o.output is not None:
        video = VideoSink(o.output, source.fps, codec=o.codec, threads=encoder_threads(pipelined=not sequential))
        sinks.append(video)
    if o.masks is not None:
        masks = MaskSink(o.masks, classes_table(meta.class_names, meta.palette))
        sinks.append(masks)
    if o.stats is not None:
        stats = StatsSink(o.stats, meta.class_names)
        sinks.append(stats)
    look = Look(view=o.view, alpha=o.alpha, legend=o.legend)
    if o.show:
        # The window's keys change the look live; a file being written keeps the look it started with.
        window_look = Look(view=o.view, alpha=o.alpha, legend=o.legend)
        sinks.append(WindowSink(window_look, lut, title=f"rtseg - {source.name}",
                                legend=Legend(meta.class_names, meta.palette)))
        if video is None and images is None:
            look = window_look
    sink = MultiSink(sinks)
    queue_size = queue_size or (1 if source.live else 4)  # live: a short queue is a short latency
    result = run(source, engine_stages(engine, look, lut=lut, i420=sink.takes_i420, temporal=temporal), sink,
                 sequential=sequential, queue_size=queue_size, max_frames=max_frames, on_frame=on_frame, trace=trace)
    return Written(result, video, images, masks, stats)


def run_summary(source: Source, engine: Engine, weights: str | Path, result: RunResult) -> dict:
    """The ``rtseg run --json`` document (docs/architecture.md)."""
    return {"source": source.name, "source_size": list(source.size), "weights": str(weights), "runtime": engine.name,
            "device": engine.device, "input_size": list(engine.input_size), "streams": engine.streams,
            "frames": result.frames, "wall_s": round(result.wall_s, 3), "fps": round(result.fps, 3),
            "dropped": result.dropped, "latency_ms": result.latency_ms, **json_stages(result.stages_ms),
            **({"outages": source.outages, "reconnects": source.reconnects} if source.live else {})}
