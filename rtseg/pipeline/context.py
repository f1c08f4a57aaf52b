"""A run opened from its :class:`~rtseg.pipeline.spec.RunSpec`, in one place and one order.

``rtseg run``, ``rtseg webcam``, ``rtseg bench``, ``rtseg eval --video``, :func:`rtseg.stream` and
the batch worker all open their runs with :func:`open_run`, so the checks and their order are the
same for all: the output refused when it is the input itself, then the source (reconnecting and
stall options; an image folder's frame rate; --start/--end/--stride), then the engine for the
source's frames (runtime and streams chosen together by :func:`rtseg.engines.open_engine`), then
the temporal filter and the queues; the source is closed again when anything after it fails.
The :class:`Run` it returns says what was resolved.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Hashable

from rtseg.engines import open_engine
from rtseg.engines.base import Engine
from rtseg.errors import RtsegError
from rtseg.pipeline.opener import open_frames, open_source
from rtseg.pipeline.sources import IMAGE_SUFFIXES, ImageFolderSource, Source
from rtseg.pipeline.spec import EngineOptions, Outputs, RunSpec, SourceOptions
from rtseg.pipeline.temporal import TemporalConfig, auto_off_reason, resolve_temporal
from rtseg.pipeline.trim import trim

__all__ = ["SourceOptions", "EngineOptions", "Outputs", "RunSpec", "Run", "EngineCache", "open_run",
           "open_source_of", "open_engine_for", "image_output"]


@dataclass
class Run:
    """An opened run: the source, the engine sized for its frames, the outputs settled, and what
    was resolved (the temporal filter and why, the queues). The pipeline closes the source when
    it runs; :meth:`close` is for a run given up before."""

    spec: RunSpec
    source: Source
    engine: Engine
    weights: Path  # the artifact the engine came from (for the run's summary)
    outputs: Outputs  # the spec's, with the output path settled (``output``, ``images``)
    temporal: TemporalConfig | None  # the filter this run gets (None: off)
    temporal_why: str | None  # why --temporal auto left it off (None: on, or not auto)
    queue_size: int  # frames each queue holds (the spec's, or 1 live / 4 for files)

    @property
    def output(self) -> Path | None:
        return self.outputs.output

    @property
    def images(self) -> str | None:
        return self.outputs.images

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EngineCache:
    """Keeps the last engine opened for an engine spec, frame size and run shape, so that a batch's
    videos of one shape share it (one per thread or Ray worker)."""

    def __init__(self) -> None:
        self.key: Hashable = None
        self.engine: Engine | None = None

    def get(self, key: Hashable, opener: Callable[[], Engine]) -> Engine:
        if self.key != key or self.engine is None:
            self.key, self.engine = None, None  # drop the old one before opening the next
            self.engine = opener()
            self.key = key
        return self.engine


def open_source_of(options: SourceOptions) -> Source:
    """The source ``options`` name, with its frame rate set and trimmed; closed again when a check fails."""
    spec = options.spec
    if options.camera:
        from rtseg.pipeline.live import open_camera

        index = int(spec) if isinstance(spec, int) or str(spec).isdigit() else spec
        src = open_camera(index, reconnect=options.reconnect, stall_timeout=options.stall_timeout)
    elif isinstance(spec, Source):  # a source of the caller's own making, opened already
        src = spec
    elif isinstance(spec, (str, int)):
        src = open_source(spec, reconnect=options.reconnect, stall_timeout=options.stall_timeout)
    else:  # frames the caller holds: an iterable, or a push handle
        src = open_frames(spec, fps=options.fps, live=options.live)
    try:
        if options.fps is not None and isinstance(spec, (str, int)):
            if not isinstance(src, ImageFolderSource):
                raise RtsegError("--fps applies to image folders and globs; a video or camera keeps its own rate")
            src.fps = options.fps
        return trim(src, start=options.start, end=options.end, stride=options.stride)
    except BaseException:
        src.close()
        raise


def open_engine_for(options: EngineOptions, frame_size: tuple[int, int], *, live: bool = False,
                    sequential: bool = False, note: Callable[[str], None] | None = None) -> Engine:
    """The engine ``options`` name for frames of ``frame_size`` (H, W); streams 0: chosen with the
    runtime for this kind of source (one for live ones and --sequential)."""
    return open_engine(options.weights, frame_size=tuple(frame_size), live=live, sequential=sequential, note=note,
                       **options.open_kwargs())


def image_output(output: str | Path | None) -> str | None:
    """"file" for -o out.png, "folder" for -o DIR/ (or an existing folder), None for a video.
    Give the text as typed: a Path drops the trailing slash that says "folder"."""
    if output is None:
        return None
    text, path = str(output), Path(output)
    if text.endswith(("/", "\\")) or path.is_dir():
        return "folder"
    return "file" if path.suffix.lower() in IMAGE_SUFFIXES else None


def _refuse_the_input(output: Path, spec: Any) -> None:
    if isinstance(spec, str) and Path(spec).exists() and output.resolve() == Path(spec).resolve():
        what = "folder" if Path(spec).is_dir() else "file"
        raise RtsegError(f"--output {output} is the input {what} itself; writing it would overwrite the source. "
                         "Choose another path")


def _default_output(spec: Any, source: Source) -> tuple[Path, str | None]:
    """<source name>_seg.mp4 in the current folder; <name>_seg<suffix> for one image."""
    one_image = isinstance(spec, str) and Path(spec).is_file() and Path(spec).suffix.lower() in IMAGE_SUFFIXES
    if one_image:
        return Path.cwd() / f"{source.name}_seg{Path(spec).suffix}", "file"
    return Path.cwd() / f"{source.name}_seg.mp4", None


def open_run(spec: RunSpec, *, note: Callable[[str], None] | None = None, engines: EngineCache | None = None) -> Run:
    """Open ``spec``'s source, then its engine for the source's frames (from ``engines`` when it
    holds one for the same options and frame size), and settle the output (a video, one image, or a
    folder when it ends in a slash or is one; :func:`image_output`): refused when it is the input
    itself, one image only for a one-frame source, ``<name>_seg.mp4`` when the spec asks for a
    default and publishes no stream (``outputs.stream``: an rtsp:// URL, checked already). Then the temporal filter (``auto`` resolved for this source and engine) and the queues."""
    o = spec.outputs
    out, images = (Path(o.output), image_output(o.output)) if o.output is not None else (None, None)
    if out is not None:
        _refuse_the_input(out, spec.source.spec)
    src = open_source_of(spec.source)
    try:
        if images == "file" and src.frame_count != 1:
            raise RtsegError(f"--output {out} is one image but {src.name} has "
                             f"{src.frame_count or 'an unknown number of'} frames; use -o DIR/ for a folder of images")

        def opener() -> Engine:
            return open_engine_for(spec.engine, src.size, live=src.live, sequential=spec.sequential, note=note)

        key = (spec.engine, tuple(src.size), src.live, spec.sequential)
        eng = engines.get(key, opener) if engines is not None else opener()
        if spec.temporal is not None and not spec.temporal.auto and not eng.has_scores:  # before any output is made
            raise RtsegError(eng.no_scores_reason())
        if (spec.scores or o.needs_scores()) and not eng.has_scores:
            raise RtsegError(f"confidence needs class scores, and {eng.name} gives class ids only for "
                             f"{spec.engine.weights_path().name} (--confidence, --min-confidence, --view confidence, "
                             "Result.confidence)")
    except BaseException:
        src.close()
        raise
    if out is None and o.default_output and o.stream is None:  # -o rtsp://... alone: the stream, no file
        out, images = _default_output(spec.source.spec, src)
    why = auto_off_reason(source=src, engine=eng) if spec.temporal is not None and spec.temporal.auto else None
    temporal = resolve_temporal(spec.temporal, source=src, engine=eng)  # auto: on for video with class scores
    queue_size = spec.queue_size or (1 if src.live else 4)  # live: a short queue is a short latency
    return Run(spec, src, eng, spec.engine.weights_path(), replace(o, output=out, images=images), temporal, why,
               queue_size)
