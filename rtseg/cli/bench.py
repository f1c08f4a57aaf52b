"""``rtseg bench``: every stage, the pipelined app, the same work sequentially and the engine
alone, in one run on the same frames; a table and the JSON (docs/architecture.md)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rtseg.cli._app import app, console
from rtseg.cli.options import run_options
from rtseg.cli.run import TRACE_HELP, new_trace, note, save_trace, stage_table


@app.command("bench")
@run_options("engine", "run:temporal,queue_size")
def bench_command(
    source: Optional[str] = typer.Argument(None, help="Video, image folder or glob [default: a 1024x2048 video "
                                                      "panned over the bundled real street frame]."),
    frames: int = typer.Option(100, help="Frames per measured run."),
    rounds: int = typer.Option(3, help="Rounds of the measurements; the figures are medians over them."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results here as JSON."),
    trace_path: Optional[Path] = typer.Option(None, "--trace", help=TRACE_HELP + " Of the first round's runs."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the first round's pipelined run as a per-stage "
                                                              "timeline PNG here: a lane per stage thread, a box per frame."),
    *, options: dict,
) -> None:
    """Measure read/transform/infer/post/write, pipelined vs sequential fps, and the engine alone.
    --streams applies to the pipelined runs; the sequential runs and the engine alone use one stream."""
    import tempfile

    from rtseg.bundled import BENCH_FRAME, bundled
    from rtseg.pipeline.bench import bench, make_panned_video
    from rtseg.pipeline.context import RunSpec, open_engine_for, open_run, open_source_of
    from rtseg.pipeline.sources import quiet_video_logs

    quiet_video_logs()
    trace = new_trace(trace_path, "rtseg bench")
    if plot is not None:
        from rtseg.pipeline.trace import Trace
        from rtseg.plots import check_png_path

        check_png_path(plot, "--plot")  # a bad path: one line, before any work
        trace = trace or Trace("rtseg bench")
    spec = RunSpec.from_options(source, **options)  # a bad option: one line before any work
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-src-") as tmp:
        if source is None:
            console.print(f"making a 1024x2048 source: {frames} frames panned over {BENCH_FRAME.name}", highlight=False)
            clip = make_panned_video(Path(tmp) / "street_pan_1024x2048.mp4", bundled(BENCH_FRAME, "benchmark frame"),
                                     frames)
            spec = replace(spec, source=replace(spec.source, source=str(clip)))
        run = open_run(spec, note=note)  # the pipelined runs' engine first: with --runtime auto, its runtime is measured
        piped = run.engine
        same = replace(spec.engine, runtime=piped.name, precision=getattr(piped, "precision", spec.engine.precision),
                       streams=1)  # the sequential runs' and the engine alone's
        eng = piped if piped.streams == 1 else open_engine_for(same, run.source.size, note=note)
        console.print(f"[bold]engine[/] {eng.describe()}" + (f"; pipelined: {piped.streams} streams" if piped.streams > 1 else ""),
                      highlight=False)
        with console.status("measuring") as status:
            result = bench(run, lambda: open_source_of(spec.source), frames=frames, rounds=rounds, engine=eng,
                           on_phase=lambda text: status.update(f"measuring: {text}"), trace=trace)
    save_trace(trace if trace_path is not None else None, trace_path)
    if plot is not None:
        from rtseg.plots import timeline, write_png

        write_png(plot, timeline(trace.events(), start_ms=None, span_ms=400.0), "--plot")
        console.print(f"wrote the timeline {plot}", highlight=False)
    if source is None:
        result["source"] = f"{BENCH_FRAME.name} panned, {result['frames']} frames (mp4v)"
    _print(result, piped.streams)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1) + "\n")
        console.print(f"wrote {json_path}", highlight=False)


def _print(result: dict, streams: int) -> None:
    stages = {**result["stages_ms"], **({"temporal": result["temporal_ms"]} if "temporal_ms" in result else {})}
    console.print(stage_table(stages, f"per-stage time ({result['frames']} frames, "
                                      f"{result['source_size'][0]}x{result['source_size'][1]} -> "
                                      f"{result['input_size'][0]}x{result['input_size'][1]})"))
    console.print(_throughput_table(result, streams))
    pipe, rnd = result["pipelined"], result["rounds"]
    if "engine_streams" in result:
        console.print(f"pipelined vs the engine alone with its {streams} streams busy: "
                      f"{rnd['pipelined_vs_engine_streams']:.2f}x", highlight=False)
    console.print(f"pipelined latency p50 {pipe['latency_ms_p50']:.0f} ms; temporal filter {result['temporal']}"
                  f"{' (--temporal off to leave it out)' if result['temporal'] == 'on' else ''}", highlight=False)


def _throughput_table(result: dict, streams: int) -> Table:
    """Pipelined, sequential and engine-alone fps (medians, each round, the ratios)."""
    pipe, seq, alone = result["pipelined"], result["sequential"], result["engine_only"]["fps"]
    rnd = result["rounds"]
    runs = rnd["fps"]
    many = "engine_streams" in result
    table = Table("run", "fps (median)", "each round", "vs sequential", "vs engine alone",
                  title=f"throughput ({rnd['count']} rounds; ratios are medians of each round's ratio)")
    table.add_row(f"pipelined{f', {streams} streams' if many else ''}", f"{pipe['fps']:.2f}",
                  " ".join(f"{v:.1f}" for v in runs["pipelined"]), f"{rnd['pipelined_vs_sequential']:.2f}x",
                  f"{rnd['pipelined_vs_engine_only']:.2f}x")
    table.add_row("sequential", f"{seq['fps']:.2f}", " ".join(f"{v:.1f}" for v in runs["sequential"]), "1.00x", "")
    table.add_row("engine alone", f"{alone:.2f}", " ".join(f"{v:.1f}" for v in runs["engine_only"]), "", "1.00x")
    if many:
        table.add_row(f"engine alone, {streams} streams", f"{result['engine_streams']['fps']:.2f}",
                      " ".join(f"{v:.1f}" for v in runs["engine_streams"]), "", "")
    return table
