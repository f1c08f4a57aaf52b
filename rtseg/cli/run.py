"""``rtseg run`` (segment a video, folder, camera or stream) and ``rtseg webcam`` (live window)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rtseg.cli._app import app, console, console_err, require_display

ENGINE_HELP = ".pt/.pth PyTorch checkpoint, .onnx (ONNX Runtime or OpenVINO), .plan/.engine TensorRT [default: the bundled CamVid weights]."


THREADS_HELP = "CPU threads for the network (0 = one per core); TensorRT ignores it."
RUNTIME_HELP = ("auto (the fastest installed here: OpenVINO, else ONNX Runtime, on a CPU; TensorRT, else PyTorch fp16, "
                "on CUDA), pytorch, onnxruntime, openvino or tensorrt. A .pt on another runtime is exported once into "
                "~/.cache/rtseg (or $RTSEG_CACHE) and reused.")
SIZE_HELP = ("Inference size HxW, e.g. 512x1024. Default: about the weights' pixel count, in the frame's shape "
             "(a fixed-size .onnx or plan keeps its own).")
STREAMS_HELP = ("Frames the network works on at once, each on its share of the CPU threads (ONNX Runtime and "
                "OpenVINO). 0 = auto: 2 on those runtimes on a CPU with 2+ cores reading a file or folder; 1 for "
                "live sources, --sequential, PyTorch and TensorRT.")
RECONNECT_HELP = ("Cameras and stream URLs: when the source stops, fails or stalls, open it again up to N times "
                  "(waits of 0.5, 1, 2, 4, 8 s) and carry on; 0 ends the run with the stream. Files never reconnect.")
STALL_HELP = "Seconds without a frame after which a live source counts as stalled (and is reconnected)."
CODEC_HELP = ("auto: H.264 through PyAV for .mp4/.mov/.mkv (browsers play it), OpenCV's codec otherwise; "
              "h264 or opencv to insist.")


def weights_path(engine: Optional[Path]) -> Path:
    """--engine, or the bundled weights."""
    from rtseg.bundled import DEFAULT_WEIGHTS, bundled

    return engine if engine is not None else bundled(DEFAULT_WEIGHTS, "CamVid weights")


def note(text: str) -> None:
    """A one-line notice (an export into the cache, a size that stretches frames) on stderr."""
    from rtseg.errors import redact

    console_err.print(redact(text), highlight=False, soft_wrap=True, markup=False)


def load(engine: Optional[Path], *, device: str, size: Optional[str], runtime: Optional[str], threads: int = 0,
         streams: int = 1, frame_size: Optional[tuple[int, int]] = None):
    """``rtseg.engines.open_engine`` with the CLI's notices (tests patch this one place)."""
    from rtseg.engines import open_engine

    return open_engine(engine, device=device, size=size, runtime=runtime, threads=threads, streams=streams,
                       frame_size=frame_size, note=note)


def image_output(output: Optional[Path], raw: Optional[str] = None) -> Optional[str]:
    """"file" for -o out.png, "folder" for -o DIR/ (or an existing folder), None for a video."""
    from rtseg.pipeline.app import IMAGE_SUFFIXES

    if output is None:
        return None
    text = raw if raw is not None else str(output)
    if text.endswith(("/", "\\")) or output.is_dir():
        return "folder"
    return "file" if output.suffix.lower() in IMAGE_SUFFIXES else None


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
         sequential: bool, max_frames: Optional[int], queue_size: int, quiet: bool, codec: str = "auto",
         json_path: Optional[Path] = None, weights: Optional[Path] = None, legend: bool = True,
         images: Optional[str] = None, stats: Optional[Path] = None) -> None:
    """Run rtseg.pipeline.app.segment with a status display and print its report; exits 130/1 as needed."""
    from rtseg.pipeline import StageError
    from rtseg.pipeline.app import Outputs, run_summary, segment

    outputs = Outputs(output=output, images=images, masks=masks, stats=stats, show=show, view=view, alpha=alpha,
                      legend=legend, codec=codec)
    if not quiet:
        console.print(f"[bold]source[/] {source.describe()}\n[bold]engine[/] {engine.describe()}"
                      f"{'  (sequential)' if sequential else ''}", highlight=False)
    total = min(source.frame_count, max_frames) if source.frame_count and max_frames else source.frame_count
    try:
        with _Status(total, source.live, quiet) as status:
            written = segment(source, engine, outputs, sequential=sequential, queue_size=queue_size,
                              max_frames=max_frames, on_frame=status.update)
    except StageError as exc:
        from rtseg.errors import redact

        console_err.print(f"error: {redact(str(exc))}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1)
    result = written.result
    if not quiet:
        console.print(stage_table(result.stages_ms, "per-stage time"))
        line = f"{result.frames} frames in {result.wall_s:.1f} s: {result.fps:.1f} fps, latency p50 {result.latency_ms['p50']:.0f} ms"
        if source.live:
            line += f", {result.dropped} stale frames dropped"
            if source.outages:
                line += f", {source.outages} outage(s), {source.reconnects} reconnect(s)"
        console.print(line, highlight=False)
    if written.video is not None and written.video.frames:
        console.print(f"wrote {output} ({written.video.codec})" + (" (interrupted: the frames so far)" if result.interrupted else ""),
                      highlight=False, soft_wrap=True)
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

        json_path.write_text(json.dumps(run_summary(source, engine, weights or weights_path(None), result), indent=1) + "\n")
        if not quiet:
            console.print(f"wrote {json_path}", highlight=False, soft_wrap=True)
    if result.interrupted:
        raise typer.Exit(130)


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
    threads: int = typer.Option(0, help=THREADS_HELP),
    streams: int = typer.Option(0, help=STREAMS_HELP),
    sequential: bool = typer.Option(False, "--sequential", help="Run the stages one after another in one thread (for comparison)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after N frames (0 = all, as eval's --limit)."),
    start: Optional[str] = typer.Option(None, help="Begin at this frame number (120) or time (4.5s, 1:02)."),
    end: Optional[str] = typer.Option(None, help="Stop before this frame number or time."),
    stride: int = typer.Option(1, help="Every Nth frame (the output's frame rate is the source's / N, so it keeps real time)."),
    fps: Optional[float] = typer.Option(None, help="Frame rate of the output video for an image folder or glob (default 30); a video keeps its own."),
    queue_size: int = typer.Option(0, "--queue-size", help="Frames each queue between stages holds (0 = 4 for files, 1 for live sources)."),
    codec: str = typer.Option("auto", help=CODEC_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary, only the output path."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the run's summary here as JSON (sizes, runtime, fps, latency, per-stage times)."),
    stats: Optional[Path] = typer.Option(None, "--stats", help="Write each frame's class pixel shares here as JSON Lines, and print a per-class summary at the end."),
    reconnect: int = typer.Option(5, help=RECONNECT_HELP),
    stall_timeout: float = typer.Option(5.0, "--stall-timeout", help=STALL_HELP),
) -> None:
    """Segment a video, image folder, camera or stream; write the overlay video (and masks, window)."""
    from rtseg.bundled import DEMO_CLIP, bundled
    from rtseg.pipeline import Look, open_source
    from rtseg.pipeline.sources import quiet_video_logs

    from rtseg.errors import RtsegError

    output = Path(output_text) if output_text is not None else None
    images = image_output(output, output_text)  # "file", "folder" or None (a video); Path drops a trailing /
    quiet_video_logs()
    Look(view=view, alpha=alpha)  # cheap checks first: validate the options, then open the source
    if max_frames is not None and max_frames < 0:
        raise RtsegError(f"--max-frames {max_frames} is not allowed; use >= 0 (0 = all frames)")
    max_frames = max_frames or None
    if show:
        require_display("--show", "run without --show: the overlay video is written all the same")
    spec = source if source is not None else str(bundled(DEMO_CLIP, "demo clip"))
    if output is not None and Path(spec).exists() and output.resolve() == Path(spec).resolve():
        what = "folder" if Path(spec).is_dir() else "file"
        raise RtsegError(f"--output {output} is the input {what} itself; writing it would overwrite the source. "
                         "Choose another path")
    if fps is not None and not fps > 0:
        raise RtsegError(f"--fps {fps} is not allowed; use a rate > 0")
    src = open_source(spec, reconnect=reconnect, stall_timeout=stall_timeout)
    try:
        from rtseg.engines import auto_streams
        from rtseg.pipeline.trim import trim

        from rtseg.pipeline.sources import ImageFolderSource

        if fps is not None:
            if not isinstance(src, ImageFolderSource):
                raise RtsegError("--fps applies to image folders and globs; a video or camera keeps its own rate")
            src.fps = fps
        src = trim(src, start=start, end=end, stride=stride)
        if images == "file" and src.frame_count != 1:
            raise RtsegError(f"--output {output} is one image but {src.name} has "
                             f"{src.frame_count or 'an unknown number of'} frames; use -o DIR/ for a folder of images")

        streams = streams or auto_streams(engine, device, live=src.live, sequential=sequential, runtime=runtime)
        eng = load(engine, device=device, size=size, runtime=runtime, threads=threads, streams=streams,
                   frame_size=tuple(src.size))
    except BaseException:
        src.close()
        raise
    if output is None:
        from rtseg.pipeline.app import IMAGE_SUFFIXES

        one_image = Path(spec).is_file() and Path(spec).suffix.lower() in IMAGE_SUFFIXES
        output = Path.cwd() / (f"{src.name}_seg{Path(spec).suffix}" if one_image else f"{src.name}_seg.mp4")
        images = "file" if one_image else None
    _run(src, eng, output=output, masks=masks, show=show, view=view, alpha=alpha, sequential=sequential,
         max_frames=max_frames, queue_size=queue_size, quiet=quiet, codec=codec, json_path=json_path,
         weights=weights_path(engine), legend=legend, images=images, stats=stats)


@app.command("webcam")
def webcam_command(
    index: str = typer.Argument("0", help="Camera index, or a live stream URL."),
    engine: Optional[Path] = typer.Option(None, "--engine", "-e", help=ENGINE_HELP),
    size: Optional[str] = typer.Option(None, help=SIZE_HELP),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: str = typer.Option("auto", help=RUNTIME_HELP),
    threads: int = typer.Option(0, help=THREADS_HELP),
    streams: int = typer.Option(1, help="Frames the network works on at once (.onnx only); 1 keeps the latency lowest."),
    alpha: float = typer.Option(0.5, help="Weight of the class colours, 0..1 (+/- keys change it)."),
    view: str = typer.Option("overlay", help="overlay, mask or side-by-side (m key cycles)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also record the overlay to this video."),
    legend: bool = typer.Option(True, "--legend/--no-legend", help="Draw the class colours with their names (l toggles it)."),
    reconnect: int = typer.Option(5, help=RECONNECT_HELP),
    stall_timeout: float = typer.Option(5.0, "--stall-timeout", help=STALL_HELP),
    queue_size: int = typer.Option(1, "--queue-size", help="Frames each queue holds; 1 keeps the latency lowest."),
) -> None:
    """Live overlay window on a camera, with an FPS read-out; stale frames are dropped, never queued."""
    from rtseg.pipeline import Look, open_camera
    from rtseg.pipeline.sources import quiet_video_logs

    quiet_video_logs()
    Look(view=view, alpha=alpha)
    require_display("rtseg webcam", f"record the overlay without a window with: rtseg run {index} -o live.mp4")
    src = open_camera(int(index) if index.isdigit() else index, reconnect=reconnect, stall_timeout=stall_timeout)
    try:
        eng = load(engine, device=device, size=size, runtime=runtime, threads=threads, streams=streams,
                   frame_size=tuple(src.size))
    except BaseException:
        src.close()
        raise
    console.print("keys: q quit, space pause, m view, +/- alpha, l legend", highlight=False)
    _run(src, eng, output=output, masks=None, show=True, view=view, alpha=alpha, sequential=False,
         max_frames=None, queue_size=queue_size, quiet=False, legend=legend)
