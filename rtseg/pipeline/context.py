"""A run's source, engine and output, opened in one place.

``rtseg run``, ``rtseg webcam``, ``rtseg bench`` and :func:`rtseg.stream` open their runs here,
so the checks and their order are the same for all: the output refused when it is the input
itself, then the source (reconnecting and stall options; an image folder's frame rate;
--start/--end/--stride), then the engine for the source's frames (streams chosen for the source,
:func:`rtseg.engines.auto_streams`), and the source closed again when anything after it fails.
Engines are opened through :func:`open_engine`, imported here: the one place (tests patch it).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

from rtseg.engines import auto_streams, open_engine
from rtseg.engines.base import Engine
from rtseg.errors import RtsegError
from rtseg.pipeline.sources import IMAGE_SUFFIXES, ImageFolderSource, Source, open_source
from rtseg.pipeline.trim import trim

__all__ = ["SourceOptions", "EngineOptions", "Run", "open_run", "image_output"]


@dataclass(frozen=True)
class SourceOptions:
    """What a run reads: SOURCE and the options that pick its frames (the CLI's flags)."""

    source: str | int | Path | None = None  # video, image folder/glob/file, camera index, URL; None: the demo clip
    start: str | None = None  # --start: the first frame, a frame number (120) or a time (4.5s, 1:02)
    end: str | None = None  # --end: the frame number or time to stop before
    stride: int = 1  # --stride: every Nth frame (the frame rate becomes the source's / N)
    fps: float | None = None  # --fps: an image folder's or glob's frame rate (None: 30)
    reconnect: int = 5  # cameras and stream URLs: times a lost source is opened again (0: the run ends)
    stall_timeout: float = 5.0  # s without a frame after which a live source counts as stalled
    camera: bool = False  # SOURCE is a camera index or a live stream URL, nothing else (rtseg webcam)

    def __post_init__(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise RtsegError(f"--fps {self.fps} is not allowed; use a rate > 0")
        if self.stride < 1:
            raise RtsegError(f"--stride {self.stride} is not allowed; use >= 1 (1 = every frame)")

    @cached_property
    def spec(self) -> str | int:
        """SOURCE as it is opened: the bundled demo clip for None."""
        if self.source is None:
            from rtseg.bundled import DEMO_CLIP, bundled

            return str(bundled(DEMO_CLIP, "demo clip"))
        return self.source if isinstance(self.source, int) else str(self.source)

    def open(self) -> Source:
        """The source with its frame rate set and trimmed; closed again when a check fails."""
        spec = self.spec
        if self.camera:
            from rtseg.pipeline.live import open_camera

            index = int(spec) if isinstance(spec, int) or spec.isdigit() else spec
            src = open_camera(index, reconnect=self.reconnect, stall_timeout=self.stall_timeout)
        else:
            src = open_source(spec, reconnect=self.reconnect, stall_timeout=self.stall_timeout)
        try:
            if self.fps is not None:
                if not isinstance(src, ImageFolderSource):
                    raise RtsegError("--fps applies to image folders and globs; a video or camera keeps its own rate")
                src.fps = self.fps
            return trim(src, start=self.start, end=self.end, stride=self.stride)
        except BaseException:
            src.close()
            raise


@dataclass(frozen=True)
class EngineOptions:
    """Which network runs, on what and how (the CLI's engine flags)."""

    weights: str | Path | None = None  # .pt/.pth, .onnx, .plan/.engine; None: the bundled CamVid weights
    runtime: str = "auto"  # auto (the fastest here), pytorch, onnxruntime, openvino or tensorrt
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (OpenVINO also takes its own device names)
    size: str | Sequence[int] | None = None  # inference HxW; None: the weights' pixel count in the frame's shape
    threads: int = 0  # CPU threads for the network (0 = one per core)
    streams: int = 0  # frames inferred at once (ONNX Runtime, OpenVINO); 0: auto_streams for the source
    precision: str = "auto"  # auto (the probe's or the runtime's own), fp32, bf16 or fp16
    # For an ONNX file without rtseg metadata (wrapped once into the cache; an error for rtseg's own):
    classes: str | None = None  # camvid, cityscapes, ade20k, voc or a classes.json; None: guessed by count
    normalize: str | None = None  # imagenet, unit, symmetric or none; None: imagenet (none for uint8 input)
    bgr: bool = False  # the model takes BGR pixels
    input_name: str | None = None  # the input to feed / output to read when the graph has several
    output_name: str | None = None

    def foreign(self) -> dict[str, Any]:
        """The foreign-file keywords for :func:`open_engine` (only those given)."""
        given = {"classes": self.classes, "normalize": self.normalize, "bgr": self.bgr,
                 "input_name": self.input_name, "output_name": self.output_name}
        return {k: v for k, v in given.items() if v not in (None, False)}

    def weights_path(self) -> Path:
        """The artifact the engine comes from (the bundled weights for None)."""
        if self.weights is not None:
            return Path(self.weights)
        from rtseg.bundled import DEFAULT_WEIGHTS, bundled

        return bundled(DEFAULT_WEIGHTS, "CamVid weights")

    def streams_for(self, *, live: bool, sequential: bool = False) -> int:
        """``streams``, or for 0 what pays for this source (one for live ones and --sequential)."""
        return self.streams or auto_streams(self.weights, self.device, live=live, sequential=sequential,
                                            runtime=self.runtime)

    def open(self, frame_size: Sequence[int], *, streams: int | None = None,
             note: Callable[[str], None] | None = None) -> Engine:
        """The engine for frames of ``frame_size`` (H, W) with ``streams`` (None: ``self.streams``,
        0 taken as 1); ``note`` gets the one-line notices (an export into the cache, a stretch)."""
        return open_engine(self.weights, device=self.device, size=self.size, runtime=self.runtime,
                           frame_size=tuple(frame_size), threads=self.threads, precision=self.precision,
                           streams=streams if streams is not None else self.streams or 1, note=note,
                           **self.foreign())


@dataclass
class Run:
    """An opened run: the source, the engine sized for its frames, and where its output goes.
    The pipeline closes the source when it runs; :meth:`close` is for a run given up before."""

    source: Source
    engine: Engine
    weights: Path  # the artifact the engine came from (for the run's summary)
    output: Path | None = None  # a video, one image, or a folder of images (``images``)
    images: str | None = None  # None: ``output`` is a video; "file": one image; "folder": an image per frame

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def image_output(output: str | Path | None) -> str | None:
    """"file" for -o out.png, "folder" for -o DIR/ (or an existing folder), None for a video.
    Give the text as typed: a Path drops the trailing slash that says "folder"."""
    if output is None:
        return None
    text, path = str(output), Path(output)
    if text.endswith(("/", "\\")) or path.is_dir():
        return "folder"
    return "file" if path.suffix.lower() in IMAGE_SUFFIXES else None


def _refuse_the_input(output: Path, spec: str | int) -> None:
    if isinstance(spec, str) and Path(spec).exists() and output.resolve() == Path(spec).resolve():
        what = "folder" if Path(spec).is_dir() else "file"
        raise RtsegError(f"--output {output} is the input {what} itself; writing it would overwrite the source. "
                         "Choose another path")


def _default_output(spec: str | int, source: Source) -> tuple[Path, str | None]:
    """<source name>_seg.mp4 in the current folder; <name>_seg<suffix> for one image."""
    one_image = isinstance(spec, str) and Path(spec).is_file() and Path(spec).suffix.lower() in IMAGE_SUFFIXES
    if one_image:
        return Path.cwd() / f"{source.name}_seg{Path(spec).suffix}", "file"
    return Path.cwd() / f"{source.name}_seg.mp4", None


def open_run(source: SourceOptions, engine: EngineOptions, *, output: str | Path | None = None,
             default_output: bool = False, sequential: bool = False,
             note: Callable[[str], None] | None = None) -> Run:
    """Open ``source``, then ``engine`` for its frames, and settle the output: ``output`` (a
    video, one image, or a folder when it ends in a slash or is one; :func:`image_output`) is
    refused when it is the input itself, and one image only takes a one-frame source; with
    ``default_output`` None becomes :func:`_default_output`. ``sequential``: the run will go
    one stage after another (one stream). The source is closed again when anything fails."""
    out, images = (Path(output), image_output(output)) if output is not None else (None, None)
    if out is not None:
        _refuse_the_input(out, source.spec)
    src = source.open()
    try:
        if images == "file" and src.frame_count != 1:
            raise RtsegError(f"--output {out} is one image but {src.name} has "
                             f"{src.frame_count or 'an unknown number of'} frames; use -o DIR/ for a folder of images")
        eng = engine.open(src.size, streams=engine.streams_for(live=src.live, sequential=sequential), note=note)
    except BaseException:
        src.close()
        raise
    if out is None and default_output:
        out, images = _default_output(source.spec, src)
    return Run(src, eng, engine.weights_path(), out, images)
