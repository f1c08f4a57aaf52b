"""``rtseg batch``: segment many videos, here or on a Ray cluster, with a manifest that makes
reruns pick up where a batch stopped (:mod:`rtseg.fleet` does the work)."""
from __future__ import annotations

import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rtseg.cli._app import app, console, console_err
from rtseg.cli.options import run_options
from rtseg.signals import EXIT_CODES as _EXIT  # 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (where the OS has it)

CLUSTER_HELP = ('ray: a local Ray instance (or the cluster in RAY_ADDRESS); ray://HOST:PORT: that cluster. One task '
                'per video (a GPU each where the cluster has GPUs). Needs pip install "rtseg[ray]"; every node needs '
                'rtseg and must see the inputs and --output-dir under the same paths (a shared file system). '
                'Default: this machine, no Ray.')


class _Board:
    """The batch's progress bar (inputs done / total, frames per second overall, time left) and a
    line per finished input."""

    def __init__(self, quiet: bool):
        self.quiet, self.frames, self.running = quiet, 0, {}
        self.progress = Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[fps]:6.1f} fps"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=console, disable=quiet, transient=False)
        self.task = self.progress.add_task("batch", total=None, fps=0.0)
        self.t0 = time.perf_counter()

    def start(self, total: int, todo: int) -> None:
        self.progress.update(self.task, total=total)
        self.progress.start()

    def frame(self, source: str, frames: int) -> None:  # from worker threads: Rich's update is thread-safe
        self.running[source] = frames
        self.progress.update(self.task, fps=(self.frames + sum(self.running.values())) / self._elapsed())

    def done(self, rec: dict) -> None:
        self.running.pop(rec["input"], None)
        if rec["status"] == "done":
            self.frames += rec["frames"]
        self.progress.update(self.task, advance=1, fps=self.frames / self._elapsed())
        if rec["status"] == "failed":
            line = f"[red]failed[/]  {escape(rec['input'])}: {escape(rec['error'] or '')}"
        else:
            line = (f"{'done' if rec['status'] == 'done' else '[dim]skipped[/]'}  {escape(rec['input'])} -> "
                    f"{escape(rec['output'])}  ({rec['frames']} frames, {rec['fps']:.1f} fps)")
        self.progress.console.print(line, highlight=False, soft_wrap=True)

    def _elapsed(self) -> float:
        return max(1e-6, time.perf_counter() - self.t0)


def _summary(result) -> Table:
    table = Table("status", "inputs", "frames", "fps", "time", title=f"batch: {result.manifest}")
    for status in ("done", "skipped", "failed"):
        recs = [r for r in result.records if r["status"] == status]
        if recs:
            frames = sum(r["frames"] for r in recs)
            wall = sum(r["wall_s"] for r in recs)
            table.add_row(status, str(len(recs)), str(frames), f"{frames / wall:.1f}" if wall else "-", f"{wall:.1f} s")
    if result.not_started:
        table.add_row("not done", str(len(result.not_started)), "-", "-", "-")
    return table


def _on_signals(stop: threading.Event) -> tuple[dict, dict]:
    """Ctrl-C, SIGTERM, SIGHUP stop the batch (what is complete stays); a second one ends it at once."""
    got: dict = {}

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        got["signum"] = signum
        stop.set()

    return got, {sig: signal.signal(sig, handler) for sig in _EXIT}


@app.command("batch")
@run_options("engine", "source:start,end,stride", "outputs:view,alpha,legend,codec", "run")
def batch_command(
    inputs: list[str] = typer.Argument(..., help="Video files, folders (their videos, recursively), globs "
                                                 "('clips/**/*.mp4') or .txt files listing inputs, one a line."),
    output_dir: Path = typer.Option(..., "--output-dir", "-d", help=(
        "Where the outputs go, named as the inputs (a/b.mp4 -> DIR/a/b_seg.mp4), with DIR/manifest.jsonl: one line "
        "per input. A rerun skips the inputs done and redoes the rest.")),
    cluster: Optional[str] = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Videos at once on this machine (1: one after another, each "
                                                      "pipelined; two at once were no faster on 2 cores)."),
    cpus: Optional[int] = typer.Option(None, "--cpus", help="CPUs of a local Ray instance (default: all)."),
    cpus_per_task: float = typer.Option(0, "--cpus-per-task", help="CPUs a Ray task takes on nodes without GPUs "
                                                                   "(0 = 2, or the node's all when fewer)."),
    retries: int = typer.Option(3, help="Times a Ray task is run again when its worker dies."),
    # Per video, beside its output (rtseg run's --masks DIR / --stats FILE name one folder or file):
    masks: bool = typer.Option(False, "--masks", help="Also write class-id PNGs to DIR/.../<name>_masks/."),
    stats: bool = typer.Option(False, "--stats", help="Also keep each frame's class shares in <name>_stats.jsonl "
                                                      "(the manifest has each video's totals anyway)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or lines; the summary and failures only."),
    *, options: dict,
) -> None:
    """Segment many videos into DIR, on this machine or a Ray cluster; exit 2 when some failed."""
    from rtseg.fleet import BatchOptions, run_batch
    from rtseg.pipeline.sources import quiet_video_logs

    quiet_video_logs()
    options = BatchOptions.of(masks=masks, stats=stats, **options)  # a bad value: one line before any video starts
    stop = threading.Event()
    got, previous = _on_signals(stop)
    board = _Board(quiet)
    try:
        result = run_batch(inputs, output_dir, options, cluster=cluster, jobs=jobs, cpus=cpus,
                           cpus_per_task=cpus_per_task, retries=retries, stop=stop, on_start=board.start,
                           on_frame=board.frame, on_done=board.done)
    finally:
        board.progress.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print(_summary(result))
    for rec in result.failed:
        console_err.print(f"failed: {rec['input']}: {rec['error']}", highlight=False, soft_wrap=True, markup=False)
    if result.disk_full:
        console_err.print("the disk is full: no new input was started; free some space and rerun", markup=False)
    if result.interrupted or result.not_started:
        again = shlex.join(["rtseg", *sys.argv[1:]]) if sys.argv[1:2] == ["batch"] else "the same rtseg batch command"
        console_err.print(f"stopped: {len(result.not_started)} input(s) not done; the complete ones are kept. "
                          f"Resume with: {again}", highlight=False, soft_wrap=True, markup=False)
    if result.interrupted:
        raise typer.Exit(_EXIT.get(got.get("signum"), 130))
    if not result.ok:
        raise typer.Exit(2)
