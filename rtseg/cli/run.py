"""``rtseg run`` (segment a video, folder, camera or stream) and ``rtseg webcam`` (live window)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rtseg.cli._app import app, console, console_err

ENGINE_HELP = ".pt/.pth PyTorch checkpoint, .onnx (ONNX Runtime or OpenVINO), .plan/.engine TensorRT [default: the bundled CamVid weights]."


THREADS_HELP = "CPU threads for the network (0 = one per core); TensorRT ignores it."
STREAMS_HELP = ("Frames the network works on at once, each on its share of the CPU threads (.onnx only). 0 = auto: "
                "2 for a .onnx on a CPU with 2+ cores reading a file or folder; 1 for live sources, --sequential "
                "and other engines.")
CODEC_HELP = ("auto: H.264 through PyAV for .mp4/.mov/.mkv (browsers play it), OpenCV's codec otherwise; "
              "h264 or opencv to insist.")


def load(engine: Optional[Path], *, device: str, size: Optional[str], runtime: Optional[str], threads: int = 0,
         streams: int = 1):
    """The engine named by --engine, or the bundled weights."""
    from rtseg.bundled import DEFAULT_WEIGHTS, bundled
    from rtseg.engines import load_engine
    from rtseg.engines.base import parse_size

    path = engine if engine is not None else bundled(DEFAULT_WEIGHTS, "CamVid weights")
    kw = {"runtime": runtime} if runtime else {}
    return load_engine(path, device=device, size=parse_size(size), threads=threads, streams=streams, **kw)


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


def _run(source, engine, *, output: Optional[Path], masks: Optional[Path], show: bool, view: str, alpha: float,
         sequential: bool, max_frames: Optional[int], queue_size: int, quiet: bool, codec: str = "auto") -> None:
    """Build the sinks, run the pipeline with a status display, print the summary; exits 130/1 as needed."""
    from rtseg.pipeline import Look, StageError, engine_stages, run
    from rtseg.pipeline.sinks import MaskSink, MultiSink, VideoSink, WindowSink, encoder_threads
    from rtseg.viz import palette_lut

    lut = palette_lut(engine.meta.palette)
    file_look = Look(view=view, alpha=alpha)
    sinks = []
    video = (VideoSink(output, source.fps, codec=codec, threads=encoder_threads(pipelined=not sequential))
             if output is not None else None)
    if video is not None:
        sinks.append(video)
    if masks is not None:
        sinks.append(MaskSink(masks))
    if show:
        # The window's keys change the look live; a file being written keeps the look it started with.
        window_look = Look(view=view, alpha=alpha)
        sinks.append(WindowSink(window_look, lut, title=f"rtseg - {source.name}"))
        look = file_look if video is not None else window_look
    else:
        look = file_look
    queue_size = queue_size or (1 if source.live else 4)  # live: a short queue is a short latency
    if not quiet:
        console.print(f"[bold]source[/] {source.describe()}\n[bold]engine[/] {engine.describe()}"
                      f"{'  (sequential)' if sequential else ''}", highlight=False)
    total = min(source.frame_count, max_frames) if source.frame_count and max_frames else source.frame_count
    try:
        with _Status(total, source.live, quiet) as status:
            sink = MultiSink(sinks)
            result = run(source, engine_stages(engine, look, lut=lut, i420=sink.takes_i420), sink, sequential=sequential,
                         queue_size=queue_size, max_frames=max_frames, on_frame=status.update)
    except StageError as exc:
        console_err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if not quiet:
        console.print(stage_table(result.stages_ms, "per-stage time"))
        line = f"{result.frames} frames in {result.wall_s:.1f} s: {result.fps:.1f} fps, latency p50 {result.latency_ms['p50']:.0f} ms"
        if source.live:
            line += f", {result.dropped} stale frames dropped"
        console.print(line, highlight=False)
    if video is not None and video.frames:
        console.print(f"wrote {output} ({video.codec})" + (" (interrupted: the frames so far)" if result.interrupted else ""),
                      highlight=False, soft_wrap=True)
    if masks is not None:
        console.print(f"wrote {result.frames} class-id PNGs to {masks}", highlight=False, soft_wrap=True)
    if result.interrupted:
        raise typer.Exit(130)


@app.command("run")
def run_command(
    source: Optional[str] = typer.Argument(None, help="Video file, image folder or glob, camera index (0) or "
                                                      "stream URL [default: the bundled demo clip]."),
    engine: Optional[Path] = typer.Option(None, "--engine", "-e", help=ENGINE_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Overlay video (.mp4, .avi, .mov, .mkv) "
                                                                      "[default: <source name>_seg.mp4 here]."),
    show: bool = typer.Option(False, "--show/--no-show", help="Also show a window (q quit, space pause, m view, +/- alpha)."),
    alpha: float = typer.Option(0.5, help="Weight of the class colours in the overlay, 0..1."),
    view: str = typer.Option("overlay", help="overlay, mask or side-by-side."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Also write lossless class-id PNGs, one per frame, to this folder."),
    size: Optional[str] = typer.Option(None, help="Inference size HxW, e.g. 512x1024 [default: the engine's]."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: Optional[str] = typer.Option(None, help="For .onnx: auto, onnxruntime or openvino [default: auto]."),
    threads: int = typer.Option(0, help=THREADS_HELP),
    streams: int = typer.Option(0, help=STREAMS_HELP),
    sequential: bool = typer.Option(False, "--sequential", help="Run the stages one after another in one thread (for comparison)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after N frames."),
    queue_size: int = typer.Option(0, "--queue-size", help="Frames each queue between stages holds (0 = 4 for files, 1 for live sources)."),
    codec: str = typer.Option("auto", help=CODEC_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary, only the output path."),
) -> None:
    """Segment a video, image folder, camera or stream; write the overlay video (and masks, window)."""
    from rtseg.bundled import DEMO_CLIP, bundled
    from rtseg.pipeline import Look, open_source
    from rtseg.pipeline.sources import quiet_video_logs

    quiet_video_logs()
    Look(view=view, alpha=alpha)  # cheap checks first: validate the options, then open the source
    src = open_source(source if source is not None else str(bundled(DEMO_CLIP, "demo clip")))
    try:
        from rtseg.engines import auto_streams

        streams = streams or auto_streams(engine, device, live=src.live, sequential=sequential)
        eng = load(engine, device=device, size=size, runtime=runtime, threads=threads, streams=streams)
    except BaseException:
        src.close()
        raise
    if output is None:
        output = Path.cwd() / f"{src.name}_seg.mp4"
    _run(src, eng, output=output, masks=masks, show=show, view=view, alpha=alpha, sequential=sequential,
         max_frames=max_frames, queue_size=queue_size, quiet=quiet, codec=codec)


@app.command("webcam")
def webcam_command(
    index: str = typer.Argument("0", help="Camera index, or a live stream URL."),
    engine: Optional[Path] = typer.Option(None, "--engine", "-e", help=ENGINE_HELP),
    size: Optional[str] = typer.Option(None, help="Inference size HxW [default: the engine's]."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: Optional[str] = typer.Option(None, help="For .onnx: auto, onnxruntime or openvino."),
    threads: int = typer.Option(0, help=THREADS_HELP),
    streams: int = typer.Option(1, help="Frames the network works on at once (.onnx only); 1 keeps the latency lowest."),
    alpha: float = typer.Option(0.5, help="Weight of the class colours, 0..1 (+/- keys change it)."),
    view: str = typer.Option("overlay", help="overlay, mask or side-by-side (m key cycles)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also record the overlay to this video."),
    queue_size: int = typer.Option(1, "--queue-size", help="Frames each queue holds; 1 keeps the latency lowest."),
) -> None:
    """Live overlay window on a camera, with an FPS read-out; stale frames are dropped, never queued."""
    from rtseg.pipeline import Look, open_camera
    from rtseg.pipeline.sources import quiet_video_logs

    quiet_video_logs()
    Look(view=view, alpha=alpha)
    # before the camera: loading takes a while
    eng = load(engine, device=device, size=size, runtime=runtime, threads=threads, streams=streams)
    src = open_camera(int(index)) if index.isdigit() else open_camera(index)
    console.print("keys: q quit, space pause, m view, +/- alpha", highlight=False)
    _run(src, eng, output=output, masks=None, show=True, view=view, alpha=alpha, sequential=False,
         max_frames=None, queue_size=queue_size, quiet=False)
