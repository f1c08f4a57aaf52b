"""What ``rtseg run`` and ``rtseg webcam`` do, as a library call: the outputs a run writes
(video or images, masks, class statistics, a window) assembled into one sink, the pipeline run
over them, and the run's summary. The CLI parses options, calls :func:`segment` and prints.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rtseg.engines.base import Engine
from rtseg.errors import redact
from rtseg.pipeline.packet import Look
from rtseg.pipeline.context import Run
from rtseg.pipeline.publish import StreamSink
from rtseg.pipeline.runner import RunResult, Sink, engine_stages
from rtseg.pipeline.runner import run as run_pipeline
from rtseg.pipeline.sinks import (ConfidenceSink, ImageSink, MaskSink, MultiSink, StatsSink, VideoSink,
                                  encoder_threads)
from rtseg.pipeline.sources import IMAGE_SUFFIXES, Source
from rtseg.pipeline.spec import Outputs
from rtseg.pipeline.trace import Trace
from rtseg.pipeline.timing import Timings, json_stages
from rtseg.pipeline.window import WindowSink
from rtseg.viz import Legend, classes_table, palette_lut

__all__ = ["Outputs", "Written", "segment", "run_summary"]

log = logging.getLogger(__name__)


@dataclass
class Written:
    """What a run wrote, for its report."""

    result: RunResult | None
    video: VideoSink | None
    images: ImageSink | None
    masks: MaskSink | None
    stats: StatsSink | None
    serve: Sink | None = None  # --serve's (its url, port)
    rerun: Sink | None = None  # --rerun's (its report line)
    stream: StreamSink | None = None  # -o rtsp://...: what was sent, how long it was down


def _image_suffix(source: Source, output: Path) -> str:
    """An image file's own suffix; for a folder, the input images' (PNG for video frames)."""
    if output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir():
        return output.suffix
    return source.image_suffix or ".png"


def _output_sinks(run: Run, lut, *, sequential: bool, made: list[Sink]) -> tuple[list[Sink], Written, Look]:
    """The sinks of the run's outputs (video or images, masks, confidence, class shares, a window),
    what will report on them, and the look the post stage draws with. Each is also added to
    ``made`` as it is made (for the caller to close when a later one fails)."""
    meta, o, source = run.engine.meta, run.outputs, run.source
    sinks: list[Sink] = []

    def add(sink):
        sinks.append(sink)
        made.append(sink)
        return sink

    written = Written(None, None, None, None, None)
    if o.output is not None and o.images is not None:
        written.images = add(ImageSink(o.output, folder=o.images == "folder", suffix=_image_suffix(source, o.output)))
    elif o.output is not None:
        written.video = add(VideoSink(o.output, source.fps, codec=o.codec,
                                      threads=encoder_threads(pipelined=not sequential)))
    if o.stream is not None:
        written.stream = add(StreamSink(o.stream, source.fps, threads=encoder_threads(pipelined=not sequential)))
    if o.masks is not None:
        written.masks = add(MaskSink(o.masks, classes_table(meta.class_names, meta.palette)))
    if o.confidence is not None:
        add(ConfidenceSink(o.confidence))
    if o.stats is not None:
        written.stats = add(StatsSink(o.stats, meta.class_names))
    look = o.look()
    if o.show:
        # The window's keys change the look live; a file being written keeps the look it started with.
        window_look = o.look()
        add(WindowSink(window_look, lut, title=f"rtseg - {source.name}", legend=Legend(meta.class_names, meta.palette)))
        if written.video is None and written.images is None and written.stream is None:
            look = window_look
    return sinks, written, look


def _serve_sink(run: Run, engine: Engine, look, say: Callable[[str], None]):
    """--serve: the live view's sink (rtseg/pipeline/live_server.py), its server started."""
    from rtseg.pipeline.live_server import ServeSink
    from rtseg.pipeline.live_view import LiveState

    o, src = run.outputs, run.source
    describe = {"source": redact(src.describe()), "runtime": engine.name, "precision": getattr(engine, "precision", None),
                "device": engine.device, "input_size": list(engine.input_size)}
    state = LiveState(meta=engine.meta, describe=describe, look=look, live=src.live, total=src.frame_count)
    return ServeSink(o.serve, state, src, token=o.serve_token, linger=o.serve_linger, say=say)


def _rerun_sink(run: Run, engine: Engine):
    """--rerun: the sink that logs the run to Rerun (rtseg/pipeline/rerun_sink.py)."""
    from rtseg.pipeline.rerun_sink import rerun_sink

    o = run.outputs
    return rerun_sink(o.rerun, engine.meta, name=redact(run.source.name), min_confidence=o.min_confidence)


def segment(run: Run, sink: Sink | None = None, *, engine: Engine | None = None, sequential: bool | None = None,
            picture: bool = True, on_frame: Callable[[int, int], None] | None = None,
            trace: Trace | None = None, timings: Timings | None = None,
            say: Callable[[str], None] = log.warning) -> Written:
    """The one path a run takes: the pipeline over ``run``'s source and engine, with the temporal
    filter and queues ``open_run`` resolved, into ``sink`` (None: the sinks of the run's outputs,
    closed, the video finalised, however the run ends). ``engine``, ``sequential``: instead of the
    run's (``rtseg bench`` runs one source both ways). ``picture``: a post stage draws the picture
    of the outputs' look (False: ids only, no post stage). Raises as :func:`rtseg.pipeline.run`."""
    spec, o = run.spec, run.outputs
    engine = engine or run.engine
    sequential = spec.sequential if sequential is None else sequential
    lut = palette_lut(engine.meta.palette)
    made: list[Sink] = []
    try:  # a sink that cannot be made (a port in use, a folder refused): what was made is closed, the source too
        # The live view and Rerun first: a port or a viewer is the likeliest refusal, and then no output file exists yet.
        served = _serve_sink(run, engine, o.look(), say) if o.serve is not None else None
        made += [served] if served is not None else []
        logged = _rerun_sink(run, engine) if o.rerun is not None else None
        made += [logged] if logged is not None else []
        if sink is None:
            sinks, written, look = _output_sinks(run, lut, sequential=sequential, made=made)
            sink = MultiSink(sinks)
        else:
            written, look = Written(None, None, None, None, None), o.look()
        # Watching sinks go beside the caller's sink and the outputs' alike (rtseg.stream's too).
        written.serve, written.rerun = served, logged
        if served is not None or logged is not None:
            sink = MultiSink([sink, *(s for s in (served, logged) if s is not None)])
        stages = engine_stages(engine, look if picture else None, lut=lut, i420=getattr(sink, "takes_i420", False),
                               temporal=run.temporal, keep_scores=spec.scores or o.needs_scores(),
                               min_confidence=o.min_confidence)
    except BaseException:
        for part in made:
            part.close(completed=False, interrupted=True)
        run.source.close()
        raise
    written.result = run_pipeline(run.source, stages, sink, sequential=sequential, queue_size=run.queue_size,
                                  max_frames=spec.max_frames, on_frame=on_frame, trace=trace, timings=timings)
    return written


def run_summary(run: Run, result: RunResult, stream: StreamSink | None = None) -> dict:
    """The ``rtseg run --json`` document (docs/architecture.md): what ran, what it resolved, and
    how fast (``latency_ms``: from capture, or the read's start for files, to the frame written;
    ``first_frame_s``: from the process's start to the first frame written); ``output_stream`` for
    ``-o rtsp://...`` (:meth:`StreamSink.summary`, from ``stream``: what was sent, how long it was down)."""
    from rtseg._version import __version__

    source, engine = run.source, run.engine
    return {"rtseg_version": __version__, "source": source.name, "source_size": list(source.size),
            "weights": str(run.weights), "runtime": engine.name, "precision": getattr(engine, "precision", None),
            "device": engine.device, "input_size": list(engine.input_size), "streams": engine.streams,
            "resize": engine.resize, "tool_files": engine.meta.extra.get("tool_files"),
            "classes": classes_table(engine.meta.class_names, engine.meta.palette)["classes"],
            "options": _options(run),
            "temporal": {"state": "off" if run.temporal is None else "on", "asked": _asked(run),
                         "why_off": run.temporal_why},
            "frames": result.frames, "wall_s": round(result.wall_s, 3), "fps": round(result.fps, 3),
            "dropped": result.dropped, "latency_ms": result.latency_ms, "first_frame_s": result.first_frame_s,
            "steady_fps": None if result.steady_fps is None else round(result.steady_fps, 3),
            **json_stages(result.stages_ms),
            **({"outages": source.outages, "reconnects": source.reconnects} if source.live else {}),
            **({"output_stream": stream.summary()} if stream is not None else {})}


def _options(run: Run) -> dict:
    """The run's options as given (the spec's flat names), secrets out: what reproduces it."""
    from dataclasses import fields

    spec = run.spec
    out = {}
    for part in (spec.source, spec.engine, spec.outputs):
        for f in fields(part):
            value = getattr(part, f.name)
            if isinstance(value, (int, float, bool, type(None))):
                out[f.name] = value
            elif isinstance(value, (str, Path, tuple)):
                out[f.name] = redact(str(value)) if not isinstance(value, tuple) else list(value)
            else:  # frames handed in, a feed: named by kind
                out[f.name] = f"<{type(value).__name__}>"
    out.update(temporal=_asked(run), queue_size=spec.queue_size, sequential=spec.sequential, max_frames=spec.max_frames)
    out.pop("serve_token", None)
    return out


def _asked(run: Run) -> str:
    t = run.spec.temporal
    return "off" if t is None else "auto" if t.auto else "on"
