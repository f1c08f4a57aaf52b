"""``rtseg run`` (segment a video, folder, camera or stream) and ``rtseg webcam`` (live window)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rtseg.cli._app import app, console, console_err, require_display

if TYPE_CHECKING:
    from rtseg.pipeline.context import Run

ENGINE_HELP = (".pt/.pth PyTorch checkpoint, .onnx (ONNX Runtime or OpenVINO; also a segmentation ONNX from another "
               "tool, wrapped once into the cache: see --classes), .plan/.engine TensorRT [default: the bundled CamVid weights].")
# The flags for an ONNX file without rtseg metadata (rtseg.engines.foreign_cache); errors for rtseg's own artifacts.
CLASSES_HELP = ("Foreign .onnx: its classes, camvid, cityscapes, ade20k, voc or a classes.json as --masks writes "
                "[default: guessed from the class count].")
NORMALIZE_HELP = ("Foreign .onnx: what its input wants, imagenet (mean/std; torchvision, smp, mmseg), unit (x/255), "
                  "symmetric (x/127.5-1) or none [default: imagenet; none for uint8 inputs].")
BGR_HELP = "Foreign .onnx: the model takes BGR pixels (default: RGB)."
INPUT_NAME_HELP = "Foreign .onnx: the input to feed, when the graph has several."
OUTPUT_NAME_HELP = "Foreign .onnx: the output to read, when the graph has several."


THREADS_HELP = "CPU threads for the network (0 = one per core); TensorRT ignores it."
TRACE_HELP = ("Write the run as a Chrome trace here (trace.json): a track per stage thread, a slice per frame; "
              "open it in https://ui.perfetto.dev or chrome://tracing.")
RUNTIME_HELP = ("auto (the fastest here, measured once per weights, size and streams on this machine and cached; "
                "rtseg doctor shows the times), pytorch, onnxruntime, openvino or tensorrt. A .pt on another runtime is exported once into "
                "~/.cache/rtseg (or $RTSEG_CACHE) and reused.")
PRECISION_HELP = ("auto (what --runtime auto measured fastest with PyTorch's class ids, or the runtime's own: "
                  "fp16 on CUDA, bf16 on OpenVINO where the CPU computes it), fp32, bf16 or fp16. One the runtime or "
                  "the CPU cannot compute is an error.")
SIZE_HELP = ("Inference size HxW, e.g. 512x1024. Default: about the weights' pixel count, in the frame's shape "
             "(a fixed-size .onnx or plan keeps its own).")
STREAMS_HELP = ("Frames the network works on at once, each on its share of the CPU threads (ONNX Runtime and "
                "OpenVINO). 0 = auto: 2 on those runtimes on a CPU with 2+ cores reading a file or folder; 1 for "
                "live sources, --sequential, PyTorch and TensorRT.")
RECONNECT_HELP = ("Cameras and stream URLs: when the source stops, fails or stalls, open it again up to N times "
                  "(waits of 0.5, 1, 2, 4, 8 s) and carry on; 0 ends the run with the stream. Files never reconnect.")
STALL_HELP = "Seconds without a frame after which a live source counts as stalled (and is reconnected)."
TEMPORAL_HELP = ("on: steadier masks on video, a running average of class scores carried along the motion (optical "
                 "flow), reset on a reconnect or a gap of frames; off: each frame on its own; auto: on for a video, "
                 "camera or stream, off for an image folder or glob and for engines without class scores (a "
                 "TensorRT plan).")
CODEC_HELP = ("auto: H.264 through PyAV for .mp4/.mov/.mkv (browsers play it), OpenCV's codec otherwise; "
              "h264 or opencv to insist.")


def note(text: str) -> None:
    """A one-line notice (an export into the cache, a size that stretches frames) on stderr."""
    from rtseg.errors import redact

    console_err.print(redact(text), highlight=False, soft_wrap=True, markup=False)


def stage_table(stages_ms: dict, title: str) -> Table:
    """Per-stage mean / p50 / p95 in milliseconds."""
    table = Table("stage", "mean ms", "p50 ms", "p95 ms", title=title)
    for name, s in stages_ms.items():
        table.add_row(name, f"{s['mean']:.1f}", f"{s['p50']:.1f}", f"{s['p95']:.1f}")
    return table


class _Status:
    """A Rich progress bar (frames, fps, eta) for finite sources, a live status line for cameras."""

    def __init__(self, total: Optional[int], live: bool, quiet: bool):
        columns = [TextColumn("{task.description}")]
        if total and not live:
            columns += [BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fps]:5.1f} fps"),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
        else:
            columns += [TextColumn("{task.completed} frames  {task.fields[fps]:5.1f} fps  "
                                   "{task.fields[dropped]} stale dropped"), TimeElapsedColumn()]
        self.progress = Progress(*columns, console=console, disable=quiet, transient=False)
        self.task = self.progress.add_task("segmenting" if not live else "live", total=total if not live else None,
                                           fps=0.0, dropped=0)

    def __enter__(self) -> "_Status":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, frames: int, dropped: int) -> None:
        elapsed = self.progress.tasks[0].elapsed or 0.0
        self.progress.update(self.task, completed=frames, dropped=dropped, fps=frames / elapsed if elapsed > 0 else 0.0)


def new_trace(path: Optional[Path], name: str):
    """A Trace to record into when --trace was given (its folder must exist), else None."""
    if path is None:
        return None
    from rtseg.errors import RtsegError
    from rtseg.pipeline.trace import Trace

    if not path.parent.is_dir():
        raise RtsegError(f"--trace {path}: folder {path.parent} does not exist")
    return Trace(name)


def save_trace(trace, path: Optional[Path]) -> None:
    """Write --trace's file (whatever stopped the run) and say where, and how to open it."""
    if trace is not None:
        trace.save(path)
        console.print(f"wrote the trace {path} (open it in https://ui.perfetto.dev or chrome://tracing)",
                      highlight=False, soft_wrap=True)


def _run(opened: "Run", *, masks: Optional[Path], show: bool, view: str, alpha: float, sequential: bool,
         max_frames: Optional[int], queue_size: int, quiet: bool, codec: str = "auto", json_path: Optional[Path] = None,
         legend: bool = True, stats: Optional[Path] = None, temporal=None, trace_path: Optional[Path] = None) -> None:
    """Run rtseg.pipeline.app.segment on an opened run (rtseg.pipeline.context) with a status
    display and print its report; exits 130/143/129 when a signal stopped it (the outputs are
    complete all the same), 1 when a stage failed."""
    from rtseg import signals
    from rtseg.pipeline import StageError
    from rtseg.pipeline.app import Outputs, segment

    source, engine, output, images = opened.source, opened.engine, opened.output, opened.images
    outputs = Outputs(output=output, images=images, masks=masks, stats=stats, show=show, view=view, alpha=alpha,
                      legend=legend, codec=codec)
    from rtseg.pipeline.temporal import auto_off_reason, resolve_temporal

    why_off = auto_off_reason(source=source, engine=engine) if temporal is not None and temporal.auto else None
    temporal = resolve_temporal(temporal, source=source, engine=engine)  # auto: on for video with class scores
    if not quiet:
        console.print(f"[bold]source[/] {source.describe()}\n[bold]engine[/] {engine.describe()}"
                      f"{'  (sequential)' if sequential else ''}; temporal filter {'on' if temporal else 'off'}"
                      f"{f' (auto: {why_off})' if why_off else ''}", highlight=False, soft_wrap=True)  # one line each, for logs
    total = min(source.frame_count, max_frames) if source.frame_count and max_frames else source.frame_count
    trace = new_trace(trace_path, f"rtseg run {source.name}")
    try:
        with _Status(total, source.live, quiet) as status:
            written = segment(source, engine, outputs, sequential=sequential, queue_size=queue_size,
                              max_frames=max_frames, on_frame=status.update, temporal=temporal, trace=trace)
    except StageError as exc:
        from rtseg.errors import redact

        console_err.print(f"error: {redact(str(exc))}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1)
    finally:
        save_trace(trace, trace_path)
    with signals.deferred():  # the outputs are closed: a signal now still lets the report and --json be written
        _report(opened, written, quiet=quiet, masks=masks, stats=stats, json_path=json_path)
    if written.result.interrupted or signals.received() is not None:
        raise typer.Exit(signals.exit_code())


def _report(opened: "Run", written, *, quiet: bool, masks: Optional[Path], stats: Optional[Path],
            json_path: Optional[Path]) -> None:
    """The run's summary, a line per output written, and --json."""
    from rtseg import signals
    from rtseg.errors import RtsegError
    from rtseg.pipeline.app import run_summary

    source, engine, output, images = opened.source, opened.engine, opened.output, opened.images
    result = written.result
    word = signals.WORDS.get(signals.received(), "interrupted")  # Ctrl-C, SIGTERM or SIGHUP
    if not quiet:
        console.print(stage_table(result.stages_ms, "per-stage time"))
        line = f"{result.frames} frames in {result.wall_s:.1f} s: {result.fps:.1f} fps, latency p50 {result.latency_ms['p50']:.0f} ms"
        if source.live:
            line += f", {result.dropped} stale frames dropped"
            if source.outages:
                line += f", {source.outages} outage(s), {source.reconnects} reconnect(s)"
        console.print(line, highlight=False)
    if written.video is not None and written.video.frames:
        so_far = f" ({word}: the {written.video.frames} frames so far)" if result.interrupted else ""
        console.print(f"wrote {output} ({written.video.codec}){so_far}", highlight=False, soft_wrap=True)
    if written.images is not None and result.frames:
        console.print(f"wrote {output}" if images == "file" else f"wrote {result.frames} images to {output}",
                      highlight=False, soft_wrap=True)
    if written.masks is not None:
        console.print(f"wrote {result.frames} class-id PNGs to {masks}", highlight=False, soft_wrap=True)
    if written.stats is not None:
        if not quiet:
            table = Table("class", "pixels %", "in frames %", title=f"classes over {result.frames} frames")
            for row in sorted(written.stats.summary(), key=lambda r: -r["mean_share"]):
                table.add_row(row["class"], f"{100 * row['mean_share']:.1f}", f"{100 * row['frames_present']:.0f}")
            console.print(table)
        console.print(f"wrote per-frame class shares to {stats}", highlight=False, soft_wrap=True)
    if json_path is not None:
        import json

        try:
            json_path.write_text(json.dumps(run_summary(source, engine, opened.weights, result), indent=1) + "\n")
        except OSError as exc:
            raise RtsegError(f"--json {json_path}: cannot write it ({exc.strerror or exc})") from exc
        if not quiet:
            console.print(f"wrote {json_path}", highlight=False, soft_wrap=True)
    if result.interrupted and (written.video is None or not written.video.frames):
        console_err.print(f"{word} after {result.frames} frames", highlight=False)


@app.command("run")
def run_command(
    source: Optional[str] = typer.Argument(None, help="Video file, image folder or glob, camera index (0) or "
                                                      "stream URL [default: the bundled demo clip]."),
    engine: Optional[Path] = typer.Option(None, "--engine", "-e", help=ENGINE_HELP),
    output_text: Optional[str] = typer.Option(None, "--output", "-o", help=(
        "Overlay video (.mp4, .mov, .mkv: H.264; .avi: MJPG), one image (out.png) for a one-image source, or DIR/ "
        "for an image per frame named as the inputs. Default: <source name>_seg.mp4 in the current folder "
        "(<name>_seg.png for one image).")),
    show: bool = typer.Option(False, "--show/--no-show", help="Also show a window (q quit, space pause, m view, +/- alpha, l legend)."),
    alpha: float = typer.Option(0.5, help="Weight of the class colours in the overlay, 0..1."),
    view: str = typer.Option("overlay", help="overlay, mask or side-by-side."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Also write lossless class-id PNGs, one per frame, to this folder, with classes.json (id, name, colour)."),
    legend: bool = typer.Option(True, "--legend/--no-legend", help="Draw the class colours with their names in a corner of the picture (l toggles it in the window)."),
    size: Optional[str] = typer.Option(None, help=SIZE_HELP),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: str = typer.Option("auto", help=RUNTIME_HELP),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    threads: int = typer.Option(0, help=THREADS_HELP),
    streams: int = typer.Option(0, help=STREAMS_HELP),
    sequential: bool = typer.Option(False, "--sequential", help="Run the stages one after another in one thread (for comparison)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after N frames (0 = all, as eval's --limit)."),
    start: Optional[str] = typer.Option(None, help="Begin at this frame number (120) or time (4.5s, 1:02)."),
    end: Optional[str] = typer.Option(None, help="Stop before this frame number or time."),
    stride: int = typer.Option(1, help="Every Nth frame (the output's frame rate is the source's / N, so it keeps real time)."),
    fps: Optional[float] = typer.Option(None, help="Frame rate of the output video for an image folder or glob (default 30); a video keeps its own."),
    temporal: str = typer.Option("auto", help=TEMPORAL_HELP),
    queue_size: int = typer.Option(0, "--queue-size", help="Frames each queue between stages holds (0 = 4 for files, 1 for live sources)."),
    codec: str = typer.Option("auto", help=CODEC_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary, only the output path."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the run's summary here as JSON (sizes, runtime, fps, latency, per-stage times)."),
    trace_path: Optional[Path] = typer.Option(None, "--trace", help=TRACE_HELP),
    stats: Optional[Path] = typer.Option(None, "--stats", help="Write each frame's class pixel shares here as JSON Lines, and print a per-class summary at the end."),
    reconnect: int = typer.Option(5, help=RECONNECT_HELP),
    stall_timeout: float = typer.Option(5.0, "--stall-timeout", help=STALL_HELP),
    classes: Optional[str] = typer.Option(None, "--classes", help=CLASSES_HELP),
    normalize: Optional[str] = typer.Option(None, "--normalize", help=NORMALIZE_HELP),
    bgr: bool = typer.Option(False, "--bgr", help=BGR_HELP),
    input_name: Optional[str] = typer.Option(None, "--input-name", help=INPUT_NAME_HELP),
    output_name: Optional[str] = typer.Option(None, "--output-name", help=OUTPUT_NAME_HELP),
) -> None:
    """Segment a video, image folder, camera or stream; write the overlay video (and masks, window)."""
    from rtseg.errors import RtsegError
    from rtseg.pipeline import Look
    from rtseg.pipeline.context import EngineOptions, SourceOptions, open_run
    from rtseg.pipeline.sources import quiet_video_logs
    from rtseg.pipeline.temporal import parse_temporal

    quiet_video_logs()
    Look(view=view, alpha=alpha)  # cheap checks first: validate the options, then open the source
    temporal_config = parse_temporal(temporal)
    if max_frames is not None and max_frames < 0:
        raise RtsegError(f"--max-frames {max_frames} is not allowed; use >= 0 (0 = all frames)")
    if show:
        require_display("--show", "run without --show: the overlay video is written all the same")
    opened = open_run(SourceOptions(source, start=start, end=end, stride=stride, fps=fps, reconnect=reconnect,
                                    stall_timeout=stall_timeout),
                      EngineOptions(engine, runtime=runtime, device=device, size=size, threads=threads, streams=streams,
                                    classes=classes, normalize=normalize, bgr=bgr, input_name=input_name,
                                    output_name=output_name, precision=precision),
                      output=output_text, default_output=True, sequential=sequential, note=note)
    _run(opened, masks=masks, show=show, view=view, alpha=alpha, sequential=sequential, max_frames=max_frames or None,
         queue_size=queue_size, quiet=quiet, codec=codec, json_path=json_path, legend=legend, stats=stats,
         temporal=temporal_config, trace_path=trace_path)


@app.command("webcam")
def webcam_command(
    index: str = typer.Argument("0", help="Camera index, or a live stream URL."),
    engine: Optional[Path] = typer.Option(None, "--engine", "-e", help=ENGINE_HELP),
    size: Optional[str] = typer.Option(None, help=SIZE_HELP),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: str = typer.Option("auto", help=RUNTIME_HELP),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    threads: int = typer.Option(0, help=THREADS_HELP),
    streams: int = typer.Option(1, help="Frames the network works on at once (.onnx only); 1 keeps the latency lowest."),
    alpha: float = typer.Option(0.5, help="Weight of the class colours, 0..1 (+/- keys change it)."),
    view: str = typer.Option("overlay", help="overlay, mask or side-by-side (m key cycles)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also record the overlay to this video."),
    legend: bool = typer.Option(True, "--legend/--no-legend", help="Draw the class colours with their names (l toggles it)."),
    reconnect: int = typer.Option(5, help=RECONNECT_HELP),
    stall_timeout: float = typer.Option(5.0, "--stall-timeout", help=STALL_HELP),
    classes: Optional[str] = typer.Option(None, "--classes", help=CLASSES_HELP),
    normalize: Optional[str] = typer.Option(None, "--normalize", help=NORMALIZE_HELP),
    bgr: bool = typer.Option(False, "--bgr", help=BGR_HELP),
    input_name: Optional[str] = typer.Option(None, "--input-name", help=INPUT_NAME_HELP),
    output_name: Optional[str] = typer.Option(None, "--output-name", help=OUTPUT_NAME_HELP),
    temporal: str = typer.Option("auto", help=TEMPORAL_HELP),
    queue_size: int = typer.Option(1, "--queue-size", help="Frames each queue holds; 1 keeps the latency lowest."),
) -> None:
    """Live overlay window on a camera, with an FPS read-out; stale frames are dropped, never queued."""
    from rtseg.pipeline import Look
    from rtseg.pipeline.context import EngineOptions, SourceOptions, open_run
    from rtseg.pipeline.sources import quiet_video_logs
    from rtseg.pipeline.temporal import parse_temporal

    quiet_video_logs()
    Look(view=view, alpha=alpha)
    temporal_config = parse_temporal(temporal)
    require_display("rtseg webcam", f"record the overlay without a window with: rtseg run {index} -o live.mp4")
    opened = open_run(SourceOptions(index, reconnect=reconnect, stall_timeout=stall_timeout, camera=True),
                      EngineOptions(engine, runtime=runtime, device=device, size=size, threads=threads, streams=streams,
                                    classes=classes, normalize=normalize, bgr=bgr, input_name=input_name,
                                    output_name=output_name, precision=precision),
                      note=note)
    opened.output = output  # a recording beside the window: a video, whatever its name
    console.print("keys: q quit, space pause, m view, +/- alpha, l legend", highlight=False)
    _run(opened, masks=None, show=True, view=view, alpha=alpha, sequential=False,
         max_frames=None, queue_size=queue_size, quiet=False, legend=legend, temporal=temporal_config)
