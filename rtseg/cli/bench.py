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
from rtseg.cli.run import (BGR_HELP, CLASSES_HELP, ENGINE_HELP, INPUT_NAME_HELP, NORMALIZE_HELP, OUTPUT_NAME_HELP,
                           PRECISION_HELP, RUNTIME_HELP, SIZE_HELP, STREAMS_HELP, TEMPORAL_HELP, THREADS_HELP, TRACE_HELP,
                           new_trace, note, save_trace, stage_table)


@app.command("bench")
def bench_command(
    source: Optional[str] = typer.Argument(None, help="Video, image folder or glob [default: a 1024x2048 video "
                                                      "panned over the bundled real street frame]."),
    engine: Optional[Path] = typer.Option(None, "--engine", "-e", help=ENGINE_HELP),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: str = typer.Option("auto", help=RUNTIME_HELP),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    threads: int = typer.Option(0, help=THREADS_HELP),
    streams: int = typer.Option(0, help=STREAMS_HELP + " The pipelined runs use it; the sequential runs and the "
                                       "engine alone use one stream."),
    frames: int = typer.Option(100, help="Frames per measured run."),
    rounds: int = typer.Option(3, help="Rounds of the measurements; the figures are medians over them."),
    size: Optional[str] = typer.Option(None, help=SIZE_HELP),
    queue_size: int = typer.Option(4, "--queue-size", help="Frames each queue between stages holds."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results here as JSON."),
    trace_path: Optional[Path] = typer.Option(None, "--trace", help=TRACE_HELP + " Of the first round's runs."),
    temporal: str = typer.Option("auto", help=TEMPORAL_HELP),
    classes: Optional[str] = typer.Option(None, "--classes", help=CLASSES_HELP),
    normalize: Optional[str] = typer.Option(None, "--normalize", help=NORMALIZE_HELP),
    bgr: bool = typer.Option(False, "--bgr", help=BGR_HELP),
    input_name: Optional[str] = typer.Option(None, "--input-name", help=INPUT_NAME_HELP),
    output_name: Optional[str] = typer.Option(None, "--output-name", help=OUTPUT_NAME_HELP),
) -> None:
    """Measure read/transform/infer/post/write, pipelined vs sequential fps, and the engine alone."""
    import tempfile

    from rtseg.bundled import BENCH_FRAME, bundled
    from rtseg.pipeline import open_source
    from rtseg.pipeline.bench import bench, make_panned_video
    from rtseg.pipeline.context import EngineOptions, SourceOptions, open_run
    from rtseg.pipeline.sources import quiet_video_logs
    from rtseg.pipeline.temporal import parse_temporal

    quiet_video_logs()
    trace = new_trace(trace_path, "rtseg bench")
    temporal_config = parse_temporal(temporal)
    options = EngineOptions(engine, runtime=runtime, device=device, size=size, threads=threads, streams=streams,
                            classes=classes, normalize=normalize, bgr=bgr, input_name=input_name, output_name=output_name,
                            precision=precision)
    if source is None:
        frame_size = (1024, 2048)
        piped = options.open(frame_size, streams=options.streams_for(live=False), note=note)
    else:  # its frame size sets the default inference size; a bad source fails here
        with open_run(SourceOptions(source), options, note=note) as probe:
            frame_size, piped = tuple(probe.source.size), probe.engine
    streams = piped.streams  # the pipelined runs' engine first: with --runtime auto, its runtime is the one measured
    same = replace(options, runtime=piped.name, precision=getattr(piped, "precision", precision))  # for the pipelined runs
    eng = piped if streams == 1 else same.open(frame_size, streams=1, note=note)
    console.print(f"[bold]engine[/] {eng.describe()}" + (f"; pipelined: {streams} streams" if streams > 1 else ""),
                  highlight=False)
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-src-") as tmp:
        if source is None:
            console.print(f"making a 1024x2048 source: {frames} frames panned over {BENCH_FRAME.name}", highlight=False)
            clip = make_panned_video(Path(tmp) / "street_pan_1024x2048.mp4", bundled(BENCH_FRAME, "benchmark frame"),
                                     frames)
            spec = str(clip)
        else:
            spec = source
        with console.status("measuring") as status:
            result = bench(eng, lambda: open_source(spec), frames=frames, rounds=rounds, queue_size=queue_size,
                           on_phase=lambda text: status.update(f"measuring: {text}"), pipelined_engine=piped,
                           temporal=temporal_config, trace=trace)
    save_trace(trace, trace_path)
    if source is None:
        result["source"] = f"{BENCH_FRAME.name} panned, {result['frames']} frames (mp4v)"

    stages = {**result["stages_ms"], **({"temporal": result["temporal_ms"]} if "temporal_ms" in result else {})}
    console.print(stage_table(stages, f"per-stage time ({result['frames']} frames, "
                                                   f"{result['source_size'][0]}x{result['source_size'][1]} -> "
                                                   f"{result['input_size'][0]}x{result['input_size'][1]})"))
    console.print(_throughput_table(result, streams))
    pipe, rnd, many = result["pipelined"], result["rounds"], "engine_streams" in result
    if many:
        console.print(f"pipelined vs the engine alone with its {streams} streams busy: "
                      f"{rnd['pipelined_vs_engine_streams']:.2f}x", highlight=False)
    console.print(f"pipelined latency p50 {pipe['latency_ms_p50']:.0f} ms; temporal filter {result['temporal']}"
                  f"{' (--temporal off to leave it out)' if result['temporal'] == 'on' else ''}", highlight=False)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1) + "\n")
        console.print(f"wrote {json_path}", highlight=False)


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
