"""``rtseg run`` (segment a video, folder, camera or stream) and ``rtseg webcam`` (live window)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rtseg.cli._app import app, console, console_err, has_display, require_display
from rtseg.cli.options import run_options

if TYPE_CHECKING:
    from rtseg.pipeline.context import Run

TRACE_HELP = ("Write the run as a Chrome trace here (trace.json): a track per stage thread, a slice per frame; "
              "open it in https://ui.perfetto.dev or chrome://tracing.")


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


def _run(run: "Run", *, quiet: bool, json_path: Optional[Path] = None, trace_path: Optional[Path] = None) -> None:
    """Run rtseg.pipeline.app.segment on an opened run (rtseg.pipeline.context) with a status
    display and print its report; exits 130/143/129 when a signal stopped it (the outputs are
    complete all the same), 1 when a stage failed."""
    from rtseg import signals
    from rtseg.pipeline import StageError
    from rtseg.pipeline.app import segment

    source, engine, spec = run.source, run.engine, run.spec
    if not quiet and spec.engine.weights is None:
        console.print(BUNDLED_NOTE, highlight=False, soft_wrap=True)
    if not quiet:
        console.print(f"[bold]source[/] {source.describe()}\n[bold]engine[/] {engine.describe()}"
                      f"{'  (sequential)' if spec.sequential else ''}; temporal filter {'on' if run.temporal else 'off'}"
                      f"{f' (auto: {run.temporal_why})' if run.temporal_why else ''}", highlight=False,
                      soft_wrap=True)  # one line each, for logs
    max_frames = spec.max_frames
    total = min(source.frame_count, max_frames) if source.frame_count and max_frames else source.frame_count
    trace = new_trace(trace_path, f"rtseg run {source.name}")
    try:
        with _Status(total, source.live, quiet) as status:
            written = segment(run, on_frame=status.update, trace=trace,
                              say=lambda text: console.print(text, highlight=False, soft_wrap=True, markup=False))
    except StageError as exc:
        from rtseg.errors import redact

        console_err.print(f"error: {redact(str(exc))}", highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(1)
    finally:
        save_trace(trace, trace_path)
    with signals.deferred():  # the outputs are closed: a signal now still lets the report and --json be written
        _report(run, written, quiet=quiet, json_path=json_path)
    if written.result.interrupted or signals.received() is not None:
        raise typer.Exit(signals.exit_code())


def _report(run: "Run", written, *, quiet: bool, json_path: Optional[Path]) -> None:
    """The run's summary, a line per output written, and --json."""
    from rtseg import signals
    from rtseg.errors import RtsegError
    from rtseg.pipeline.app import run_summary

    source, output, images = run.source, run.output, run.images
    masks, stats = run.outputs.masks, run.outputs.stats
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
    if written.stream is not None:
        console.print(stream_line(written.stream.summary()), highlight=False, soft_wrap=True, markup=False)
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
    if written.rerun is not None:
        console.print(written.rerun.report(), highlight=False, soft_wrap=True)
    if json_path is not None:
        import json

        try:
            json_path.write_text(json.dumps(run_summary(run, result, written.stream), indent=1) + "\n")
        except OSError as exc:
            raise RtsegError(f"--json {json_path}: cannot write it ({exc.strerror or exc})") from exc
        if not quiet:
            console.print(f"wrote {json_path}", highlight=False, soft_wrap=True)
    if result.interrupted and (written.video is None or not written.video.frames):
        console_err.print(f"{word} after {result.frames} frames", highlight=False)


def stream_line(s: dict) -> str:
    """-o rtsp://...'s line: frames sent, and how long the server was away."""
    line = f"published {s['frames_sent']} frames to {s['url']}"
    if s["outages"]:
        line += (f"; down {s['down_s']:.1f} s ({s['outages']} outage(s), {s['reconnects']} reconnect(s)), "
                 f"{s['frames_dropped']} frames not sent")
    return line


# What the bundled weights are for, said on the first line of every run that uses them.
BUNDLED_NOTE = ("bundled weights: Fast-SCNN trained on CamVid (Cambridge streets, 2008, 360x480): 11 classes, no lane or "
                "drivable-area class; CC BY-NC 4.0 (non-commercial). For highways or other cities, bring a Cityscapes or "
                "ADE20K model (--engine model.onnx) or train on your own footage (rtseg train).")
SOURCE_HELP = "Video file, image folder or glob, camera index (0) or stream URL [default: the bundled demo clip]."
JSON_HELP = ("Write the run's summary here as JSON (what ran and what it resolved, fps, latency from capture p50/p95/p99, "
             "the time to the first frame, per-stage times).")


@app.command("run")
@run_options("source", "engine", "outputs", "run")
def run_command(
    source: Optional[str] = typer.Argument(None, help=SOURCE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary, only the output path."),
    json_path: Optional[Path] = typer.Option(None, "--json", help=JSON_HELP),
    trace_path: Optional[Path] = typer.Option(None, "--trace", help=TRACE_HELP),
    *, options: dict,
) -> None:
    """Segment a video, image folder, camera or stream; write the overlay video (and masks, window)."""
    from rtseg.pipeline.context import RunSpec, open_run
    from rtseg.pipeline.sources import quiet_video_logs

    quiet_video_logs()
    spec = RunSpec.from_options(source, **options, default_output=True)  # cheap checks first, then the source
    if spec.outputs.show:
        require_display("--show", "run without --show: the overlay video is written all the same")
    _run(open_run(spec, note=note), quiet=quiet, json_path=json_path, trace_path=trace_path)


@app.command("webcam")
@run_options("source:reconnect,stall_timeout", "engine",
             "outputs:output,view,alpha,legend,codec,serve,serve_token,rerun", "run:temporal,queue_size")
def webcam_command(
    index: str = typer.Argument("0", help="Camera index, or a live stream URL."),
    *, options: dict,
) -> None:
    """Live overlay window on a camera, with an FPS read-out; stale frames are dropped, never queued."""
    from rtseg.pipeline.context import RunSpec, open_run
    from rtseg.pipeline.sources import quiet_video_logs

    quiet_video_logs()
    from rtseg.pipeline.publish import is_stream_url

    # Watched from elsewhere (the page, an RTSP server, Rerun): no window needed, as on a robot over SSH.
    watched = (options.get("serve") is not None or options.get("rerun") is not None
               or any(is_stream_url(v) for v in options.get("output") or ()))
    headless = watched and not has_display()
    spec = RunSpec.from_options(index, **options, camera=True, show=not headless)  # -o: a recording beside it
    if not headless:
        require_display("rtseg webcam", f"watch it in a browser with: rtseg webcam {index} --serve 8080, publish "
                                        f"it with -o rtsp://SERVER:8554/seg (or record it: rtseg run {index} -o "
                                        "live.mp4)")
    run = open_run(spec, note=note)
    if spec.outputs.show:
        console.print("keys: q quit, space pause, m view, +/- alpha, l legend", highlight=False)
    _run(run, quiet=False)
