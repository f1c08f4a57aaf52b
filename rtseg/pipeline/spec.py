"""One run's options, declared once: :class:`RunSpec`.

Every option of a run (what it reads, which network runs on what, what it writes, the temporal
filter, the queues) is a field of one of four frozen dataclasses, with its default, its flag and
its help text. The command line's flags (``rtseg.cli.options``), the keywords of
:func:`rtseg.stream` and :func:`rtseg.batch` and the batch worker all come from these fields, so
an option is added in one place. Values are checked once, when the spec is made, with errors
that name the flag, the value and what is allowed; :func:`rtseg.pipeline.context.open_run`
resolves what depends on the source and the machine (streams, runtime, the temporal filter).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

from rtseg.errors import RtsegError
from rtseg.meta import RESIZE_MODES
from rtseg.pipeline.packet import Look
from rtseg.pipeline.temporal import parse_temporal

__all__ = ["SourceOptions", "EngineOptions", "Outputs", "RunSpec", "option", "flag_of", "GROUPS"]


def option(default: Any, *flags: str, help: str, cli: Any = None) -> Any:
    """A field with its command-line flag(s) and help; ``cli``: the flag's type where the field's
    own annotation is wider than what a command line gives (a path typed as text)."""
    return field(default=default, metadata={"flags": flags, "help": help, "cli": cli})


def flag_of(cls: type, name: str) -> str:
    """The flag that sets field ``name`` of ``cls`` (``--stall-timeout``), for messages."""
    for f in fields(cls):
        if f.name == name and f.metadata.get("flags"):
            return f.metadata["flags"][0].split("/")[0]
    return name


def _refuse(cls: type, name: str, value: Any, allowed: str) -> RtsegError:
    return RtsegError(f"{flag_of(cls, name)} {value} is not allowed; {allowed}")


# Help texts shared by several fields.
_FOREIGN = "Foreign .onnx (no rtseg metadata): "
_FOREIGN_FIELDS = ("classes", "colors", "normalize", "bgr", "resize", "input_name", "output_name")  # an error for rtseg's own files


@dataclass(frozen=True)
class SourceOptions:
    """What a run reads: SOURCE and the options that pick its frames."""

    source: Any = None  # video, image folder/glob/file, camera index, URL, or frames (an iterable); None: the demo clip
    start: Optional[str] = option(None, "--start", help="Begin at this frame number (120) or time (4.5s, 1:02).")
    end: Optional[str] = option(None, "--end", help="Stop before this frame number or time.")
    stride: int = option(1, "--stride", help="Every Nth frame (the output's frame rate is the source's / N, so it "
                                             "keeps real time).")
    fps: Optional[float] = option(None, "--fps", help="Frame rate of the output video for an image folder or glob "
                                                      "(default 30); a video keeps its own.")
    reconnect: int = option(5, "--reconnect", help=(
        "Cameras and stream URLs: when the source stops, fails or stalls, open it again up to N times (waits of "
        "0.5, 1, 2, 4, 8 s) and carry on; 0 ends the run with the stream. Files never reconnect."))
    stall_timeout: float = option(5.0, "--stall-timeout", help="Seconds without a frame after which a live source "
                                                               "counts as stalled (and is reconnected).")
    camera: bool = False  # SOURCE is a camera index or a live stream URL, nothing else (rtseg webcam)
    live: Optional[bool] = None  # frames handed in (an iterable, a push handle): newest-wins when True; None: not live

    def __post_init__(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise _refuse(SourceOptions, "fps", self.fps, "use a rate > 0")
        if self.stride < 1:
            raise _refuse(SourceOptions, "stride", self.stride, "use >= 1 (1 = every frame)")
        if self.reconnect < 0:
            raise _refuse(SourceOptions, "reconnect", self.reconnect, "use >= 0 (0 = never)")
        if not self.stall_timeout > 0:
            raise _refuse(SourceOptions, "stall_timeout", self.stall_timeout, "use seconds > 0")
        for name in ("start", "end"):  # positions as the CLI takes them: text
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, str(value))

    @cached_property
    def spec(self) -> Any:
        """SOURCE as it is opened: the bundled demo clip for None; a Path as text."""
        if self.source is None:
            from rtseg.bundled import DEMO_CLIP, bundled

            return str(bundled(DEMO_CLIP, "demo clip"))
        return str(self.source) if isinstance(self.source, Path) else self.source


@dataclass(frozen=True)
class EngineOptions:
    """Which network runs, on what and how."""

    weights: Any = option(None, "--engine", "-e", cli=Optional[Path], help=(
        ".pt/.pth PyTorch checkpoint, .onnx (ONNX Runtime or OpenVINO; also a segmentation ONNX from another tool, "
        "wrapped once into the cache: see --classes), .plan/.engine TensorRT, an OpenVINO IR .xml or its folder "
        "(ultralytics' *_openvino_model/) [default: the bundled CamVid weights]."))
    runtime: str = option("auto", "--runtime", help=(
        "auto (the fastest here, measured once per weights, size and streams on this machine and cached; rtseg "
        "doctor shows the times), pytorch, onnxruntime, openvino or tensorrt. A .pt on another runtime is exported "
        "once into ~/.cache/rtseg (or $RTSEG_CACHE) and reused."))
    device: str = option("cpu", "--device", help="cpu, cuda or cuda:N (rtseg.stream: auto, CUDA where PyTorch sees "
                                                 "a GPU).")
    size: Any = option(None, "--size", cli=Optional[str], help=(
        "Inference size HxW, e.g. 512x1024. Default: about the weights' pixel count, in the frame's shape (a "
        "fixed-size .onnx or plan keeps its own)."))
    threads: int = option(0, "--threads", help="CPU threads for the network (0 = one per core); TensorRT ignores it.")
    streams: int = option(0, "--streams", help=(
        "Frames the network works on at once, each on its share of the CPU threads (ONNX Runtime and OpenVINO). "
        "0 = auto: 2 on those runtimes on a CPU with 2+ cores reading a file or folder; 1 for live sources, "
        "--sequential, PyTorch and TensorRT."))
    precision: str = option("auto", "--precision", help=(
        "auto (what --runtime auto measured fastest with PyTorch's class ids, or the runtime's own: fp16 on CUDA, "
        "bf16 on OpenVINO where the CPU computes it), fp32, bf16 or fp16. One the runtime or the CPU cannot "
        "compute is an error."))
    warmup: int = option(0, "--warmup", help="Inference calls on a blank frame as soon as the engine is open, so "
                                             "that the first real frame is not the slow one (0 = none).")
    classes: Optional[str] = option(None, "--classes", help=_FOREIGN + (
        "its classes: camvid, cityscapes, ade20k, voc, a classes.json as --masks writes (or a JSON list of names), "
        "or a text file with one name a line (jetson-inference's classes.txt, a labels.txt) [default: guessed "
        "from the class count]."))
    colors: Optional[str] = option(None, "--colors", help=_FOREIGN + (
        "the classes' colours, one a line: R G B (0..255; jetson-inference's colors.txt) or #rrggbb [default: "
        "the preset's, or generated]."))
    normalize: Optional[str] = option(None, "--normalize", help=_FOREIGN + (
        "what its input wants, imagenet (mean/std; torchvision, smp, mmseg), unit (x/255), symmetric (x/127.5-1) "
        "or none [default: imagenet; none for uint8 inputs]."))
    bgr: bool = option(False, "--bgr", help=_FOREIGN + "the model takes BGR pixels (default: RGB).")
    resize: Optional[str] = option(None, "--resize", help=_FOREIGN + (
        "how a frame becomes its input: stretch (to the size) or letterbox (the aspect kept, grey padding, the ids "
        "mapped back without it; as ultralytics trains) [default: the file's tool's, else stretch]."))
    input_name: Optional[str] = option(None, "--input-name", help=_FOREIGN + "the input to feed, when the graph "
                                                                             "has several.")
    output_name: Optional[str] = option(None, "--output-name", help=_FOREIGN + "the output to read, when the graph "
                                                                               "has several.")

    def __post_init__(self) -> None:
        from rtseg.engines.runtimes import check_precision

        if self.threads < 0:
            raise _refuse(EngineOptions, "threads", self.threads, "use >= 0 (0 = one per core)")
        if self.streams < 0:
            raise _refuse(EngineOptions, "streams", self.streams, "use >= 0 (0 = auto)")
        if self.warmup < 0:
            raise _refuse(EngineOptions, "warmup", self.warmup, "use >= 0 (0 = none)")
        check_precision(self.precision)
        if self.resize is not None and self.resize not in RESIZE_MODES:
            raise _refuse(EngineOptions, "resize", repr(self.resize), f"use {' or '.join(RESIZE_MODES)}")
        if isinstance(self.size, list):  # hashable: the batch worker keys its engines by these options
            object.__setattr__(self, "size", tuple(self.size))

    def foreign(self) -> dict[str, Any]:
        """The foreign-file keywords (only those given)."""
        return {k: getattr(self, k) for k in _FOREIGN_FIELDS if getattr(self, k) not in (None, False)}

    def open_kwargs(self) -> dict[str, Any]:
        """Every field but ``weights`` as :func:`rtseg.engines.open_engine`'s keywords (the foreign-file
        ones only when given): a new field reaches the engine with no other change."""
        kw = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "weights"}
        return {k: v for k, v in kw.items() if k not in _FOREIGN_FIELDS or v not in (None, False)}

    def weights_path(self) -> Path:
        """The artifact the engine comes from (the bundled weights for None)."""
        if self.weights is not None:
            return Path(self.weights)
        from rtseg.bundled import DEFAULT_WEIGHTS, bundled

        return bundled(DEFAULT_WEIGHTS, "CamVid weights")


@dataclass(frozen=True)
class Outputs:
    """What a run writes and shows."""

    output: Any = option(None, "--output", "-o", cli=Optional[list[str]], help=(
        "Overlay video (.mp4, .mov, .mkv: H.264; .avi: MJPG), one image (out.png) for a one-image source, DIR/ "
        "for an image per frame named as the inputs, or rtsp://HOST:PORT/PATH to publish it as H.264 to an RTSP "
        "server (MediaMTX); give -o twice for a file and a stream. Default: <source name>_seg.mp4 in the current "
        "folder (<name>_seg.png for one image); rtseg webcam writes none unless asked."))
    masks: Optional[Path] = option(None, "--masks", help=(
        "Also write lossless class-id PNGs, one per frame, to this folder, with classes.json (id, name, colour)."))
    confidence: Optional[Path] = option(None, "--confidence", help=(
        "Also write the top class's probability, one 8-bit PNG per frame (255 = probability 1), to this folder. "
        "Needs a model that gives class scores."))
    min_confidence: float = option(0.0, "--min-confidence", help=(
        "Paint pixels whose top class is less probable than P as unknown (black in the overlay, 255 in --masks), "
        "0..1 (0 = off)."))
    stats: Optional[Path] = option(None, "--stats", help=(
        "Write each frame's class pixel shares here as JSON Lines, and print a per-class summary at the end."))
    show: bool = option(False, "--show/--no-show", help="Also show a window (q quit, space pause, m view, +/- alpha, "
                                                        "l legend).")
    view: str = option("overlay", "--view", help="overlay, mask, side-by-side (m cycles them in the window) or "
                                                 "confidence (the top class's probability as a heat map).")
    alpha: float = option(0.5, "--alpha", help="Weight of the class colours in the overlay, 0..1 (+/- in the window).")
    legend: bool = option(True, "--legend/--no-legend", help=(
        "Draw the class colours with their names in a corner of the picture (l toggles it in the window)."))
    codec: str = option("auto", "--codec", help=(
        "auto: H.264 through PyAV for .mp4/.mov/.mkv (browsers play it), OpenCV's codec otherwise; h264 or opencv "
        "to insist."))
    serve: Optional[str] = option(None, "--serve", help=(
        "Also serve a live view over HTTP at [HOST:]PORT (0: any free port): a page with the overlay, legend, "
        "figures and buttons; /stream.mjpg, /snapshot.jpg, /stats.json, /metrics. 127.0.0.1 unless a host is "
        "given; any other host needs the token the printed URL carries."))
    serve_token: Optional[str] = option(None, "--serve-token", help="The token --serve asks for (default: a random "
                                                                    "one for a non-loopback host; none on 127.0.0.1).")
    serve_linger: float = option(0.0, "--serve-linger", help="Seconds the live view stays up after a file's last "
                                                             "frame, to read the end.")
    rerun: Optional[str] = option(None, "--rerun", help=(
        "Also log the run to Rerun (pip install 'rtseg[rerun]'): the frames, the class map with the class names "
        "and colours, the confidence when kept, the stage times, on the frames' capture time. FILE.rrd saves it; "
        "[HOST:]PORT (or rerun+http://HOST:PORT/proxy) sends it to a running viewer (its port is 9876); spawn "
        "starts a viewer here."))
    default_output: bool = False  # no --output: write <source name>_seg.mp4 (rtseg run); False: no file
    images: Optional[str] = None  # set by open_run: None a video, "file" one image, "folder" an image per frame
    stream: Optional[str] = None  # the -o that is a URL (rtsp://...), taken out of `output` when the spec is made

    def __post_init__(self) -> None:
        output, stream = _split_output(self.output)
        object.__setattr__(self, "output", output)  # the file or folder, or None
        object.__setattr__(self, "stream", stream or self.stream)
        Look(view=self.view, alpha=self.alpha)  # one line naming --view or --alpha
        if not 0.0 <= self.min_confidence <= 1.0:
            raise _refuse(Outputs, "min_confidence", self.min_confidence, "use a probability 0..1 (0 = off)")
        if self.serve is not None:
            from rtseg.pipeline.live_view import parse_serve

            parse_serve(self.serve)  # one line naming --serve, before anything opens
        if self.rerun is not None:
            from rtseg.pipeline.rerun_sink import parse_rerun, require_rerun

            parse_rerun(self.rerun)  # one line naming --rerun, before anything opens
            require_rerun()  # the SDK's absence too
        if self.serve_linger < 0:
            raise _refuse(Outputs, "serve_linger", self.serve_linger, "use seconds >= 0")
        if self.codec not in ("auto", "h264", "opencv"):
            raise _refuse(Outputs, "codec", repr(self.codec), "use auto, h264 or opencv")

    def look(self) -> Look:
        return Look(view=self.view, alpha=self.alpha, legend=self.legend)

    def needs_scores(self) -> bool:
        """Whether the outputs read the class probabilities (not only the ids)."""
        return self.confidence is not None or self.min_confidence > 0 or self.view == "confidence"


def _split_output(value: Any) -> tuple[Any, Optional[str]]:
    """-o's values (one, or a list: -o given twice) as (file or folder, stream URL), at most one of
    each; the URL checked (:func:`rtseg.pipeline.publish.check_stream_url`)."""
    values = list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]
    if not values:
        return None, None
    from rtseg.pipeline.publish import check_stream_url, is_stream_url

    urls = [v for v in values if is_stream_url(v)]
    files = [v for v in values if not is_stream_url(v)]
    if len(files) > 1 or len(urls) > 1:
        twice = ", ".join(map(str, files if len(files) > 1 else urls))
        raise RtsegError(f"--output given twice for the same kind of output ({twice}); give at most one file or "
                         "folder and one rtsp:// URL")
    for url in urls:
        check_stream_url(url)
    return (files[0] if files else None), (urls[0] if urls else None)


@dataclass(frozen=True)
class RunSpec:
    """A whole run: its source, engine and outputs, and how the stages run."""

    source: SourceOptions = SourceOptions()
    engine: EngineOptions = EngineOptions()
    outputs: Outputs = Outputs()
    # "auto", "on", "off" (or True/False, or a TemporalConfig); after checking: a TemporalConfig, or None for off
    temporal: Any = option("auto", "--temporal", cli=str, help=(
        "on: steadier masks on video, a running average of class scores carried along the motion (optical flow), "
        "reset on a reconnect or a gap of frames; off: each frame on its own; auto: on for a video, camera or "
        "stream, off for an image folder or glob and for engines without class scores (a TensorRT plan)."))
    queue_size: int = option(0, "--queue-size", help="Frames each queue between stages holds (0 = 4 for files, "
                                                     "1 for live sources: a short queue is a short latency).")
    sequential: bool = option(False, "--sequential", help="Run the stages one after another in one thread (for "
                                                          "comparison).")
    max_frames: Optional[int] = option(None, "--max-frames", help="Stop after N frames (0 = all, as eval's --limit).")
    scores: bool = False  # rtseg.stream: keep each frame's class probabilities (Result.scores, Result.confidence)

    def __post_init__(self) -> None:
        if self.queue_size < 0:
            raise _refuse(RunSpec, "queue_size", self.queue_size, "use >= 0 (0 = 4 for files, 1 for live sources)")
        if self.max_frames is not None and self.max_frames < 0:
            raise _refuse(RunSpec, "max_frames", self.max_frames, "use >= 0 (0 = all frames)")
        if self.max_frames == 0:
            object.__setattr__(self, "max_frames", None)
        object.__setattr__(self, "temporal", parse_temporal(self.temporal))  # the one parse: a config, or None for off

    @classmethod
    def from_options(cls, source: Any = None, **options: Any) -> "RunSpec":
        """A spec from flat keywords, each the name of a field of one of the parts (``weights``,
        ``stride``, ``view``, ``temporal``, ...): what ``rtseg.stream`` and ``rtseg.batch`` take."""
        parts: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
        for key, value in options.items():
            group = _FIELD_GROUP.get(key)
            if group is None:
                raise RtsegError(f"unknown option {key!r}; the options are: {', '.join(sorted(_FIELD_GROUP))}")
            parts[group][key] = value
        run = parts.pop("run")
        return cls(source=SourceOptions(source, **parts["source"]), engine=EngineOptions(**parts["engine"]),
                   outputs=Outputs(**parts["outputs"]), **run)


# The parts of a spec by the name commands use for them, and which part each flat keyword sets.
GROUPS: dict[str, type] = {"source": SourceOptions, "engine": EngineOptions, "outputs": Outputs, "run": RunSpec}
_FIELD_GROUP = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)
                if f.name not in ("source", "images", "stream") and (group != "run" or f.name not in GROUPS)}
