"""``--runtime auto`` against every runtime forced by hand, on this machine, in one run.

1. For each size (512x1024, and ``rtseg bench``'s default for its 1024x2048 source), a fresh
   cache: auto's first open (the exports into the cache, then the probe) timed, then the engine
   alone (``infer`` on one frame, one stream) for auto's pick and for each runtime forced, taking
   turns in each round so that a busy machine slows them alike; fps are medians over the rounds.
2. ``rtseg bench`` with the defaults before (OpenVINO f32: the old fixed rule) and after (auto's
   pick), and ``rtseg bench --size 512x1024`` with auto: pipelined, sequential and engine-alone fps.
   The temporal filter is off in these (the old defaults had none), so they compare runtimes alone.
3. The issue's target itself, measured fairly: the pipelined app at the defaults (1024x2048 source,
   the overlay encoded to H.264) with the old default engine and with auto's, taking turns round
   by round in one process (two ``rtseg bench`` runs one after the other catch different load);
   also the new defaults with the temporal filter on. The ratio is the median of the rounds' ratios.

    python benchmarks/auto_runtime.py --json benchmarks/results/auto_runtime.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rtseg.engines import open_engine, probe
from rtseg.engines.base import aspect_size
from rtseg.formats.checkpoint import load_checkpoint
from rtseg.bundled import DEFAULT_WEIGHTS
from results_json import write_json  # benchmarks/results_json.py, beside this script

FORCED = (("pytorch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"))
if __import__("rtseg.machine", fromlist=["native_bf16"]).native_bf16():  # an AMX / AVX512-BF16 CPU
    FORCED += (("openvino", "bf16"),)  # the fastest forced runtime there, which auto must now keep (#37)


def engine_alone(size: tuple[int, int], rounds: int, calls: int) -> dict:
    """Auto's first open (timed) and the engine-alone fps of auto's pick and each forced runtime."""
    notes: list[str] = []
    t0 = time.perf_counter()
    auto = open_engine(None, runtime="auto", size=size, streams=1, note=notes.append)
    first_open_s = time.perf_counter() - t0
    choice = next(iter(probe.cached_choices().values()), None)
    engines = {"auto": auto}
    for name, precision in FORCED:
        engines[f"{name} {precision}"] = open_engine(None, runtime=name, size=size, precision=precision,
                                                     note=lambda _: None)
    frames = [e for e in probe.probe_frames(size, 3)]
    batches = {k: [e.preprocess([f]) for f in frames] for k, e in engines.items()}
    for k, e in engines.items():  # warm-up
        e.infer(batches[k][0])
    fps: dict[str, list[float]] = {k: [] for k in engines}
    order = list(engines)
    for r in range(rounds):
        for k in order[r % len(order):] + order[:r % len(order)]:
            t = time.perf_counter()
            for i in range(calls):
                engines[k].infer(batches[k][i % len(frames)])
            fps[k].append(calls / (time.perf_counter() - t))
    med = {k: round(float(np.median(v)), 2) for k, v in fps.items()}
    fastest = max((k for k in med if k != "auto"), key=med.get)
    return {"size": list(size), "auto_pick": f"{auto.name} {auto.precision}", "auto_note": notes[-1] if notes else "",
            "first_open_s": round(first_open_s, 2), "probe_s": choice.about.get("probe_s") if choice else None,
            "export_s": choice.about.get("export_s") if choice else None,
            "probe_ms": choice.ms if choice else {}, "engine_alone_fps": med, "rounds_fps": fps,
            "fastest_forced": fastest, "auto_vs_fastest_forced": round(med["auto"] / med[fastest], 3)}


def rtseg_bench(args: list[str], env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        subprocess.run([sys.executable, "-m", "rtseg.cli", "bench", *args, "--json", str(out)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        res = json.loads(out.read_text())
    keep = {k: res[k] for k in ("engine", "precision", "input_size", "streams", "pipelined", "sequential",
                                "engine_only") if k in res}
    keep["engine_streams"] = res.get("engine_streams")
    keep["rounds"] = res["rounds"]
    return keep


def pipelined_turns(rounds: int, frames: int) -> dict:
    """Pipelined fps of the defaults before (OpenVINO f32) and after (auto; filter off, then on),
    round by round on one panned 1024x2048 clip; what ``rtseg bench`` times as "pipelined"."""
    from rtseg.bundled import BENCH_FRAME
    from rtseg.pipeline.bench import make_panned_video
    from rtseg.pipeline.packet import Look
    from rtseg.pipeline.runner import engine_stages, run
    from rtseg.pipeline.sinks import VideoSink, encoder_threads
    from rtseg.pipeline.sources import VideoFileSource
    from rtseg.pipeline.temporal import TemporalConfig

    frame_size = (1024, 2048)
    before = open_engine(None, runtime="openvino", precision="fp32", frame_size=frame_size, streams=2,
                         note=lambda _: None)
    after = open_engine(None, runtime="auto", frame_size=frame_size, streams=2, note=lambda _: None)
    variants = {"before_openvino_fp32": (before, None), "after_auto": (after, None),
                "after_auto_temporal_on": (after, TemporalConfig())}
    fps: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory(prefix="rtseg-turns-") as tmp:
        clip = make_panned_video(Path(tmp) / "pan.mp4", BENCH_FRAME, frames)
        order = list(variants)
        for r in range(rounds + 1):  # round 0 warms every engine up and is not counted
            for k in order[r % len(order):] + order[:r % len(order)]:
                engine, temporal = variants[k]
                src = VideoFileSource(clip)
                sink = VideoSink(Path(tmp) / f"{k}.mp4", src.fps, threads=encoder_threads(pipelined=True))
                res = run(src, engine_stages(engine, Look(), i420=sink.takes_i420, temporal=temporal), sink)
                if r:
                    fps[k].append(round(res.fps, 2))
    ratio = lambda a, b: round(float(np.median([x / y for x, y in zip(fps[a], fps[b])])), 3)  # noqa: E731
    return {"engines": {"before": f"{before.name} {before.precision}", "after": f"{after.name} {after.precision}"},
            "input_size": list(after.input_size), "streams": 2, "frames": frames, "rounds_fps": fps,
            "median_fps": {k: round(float(np.median(v)), 2) for k, v in fps.items()},
            "after_vs_before": ratio("after_auto", "before_openvino_fp32"),
            "after_temporal_on_vs_before": ratio("after_auto_temporal_on", "before_openvino_fp32")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20, help="infer calls per engine per round")
    ap.add_argument("--bench-frames", type=int, default=100)
    ap.add_argument("--turns", type=int, default=5, help="rounds of the before/after pipelined comparison")
    ap.add_argument("--engine-alone-only", action="store_true", help="part 1 only (auto against each forced runtime)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    meta = load_checkpoint(DEFAULT_WEIGHTS)["meta"]
    default = aspect_size(meta.input_size, (1024, 2048))  # rtseg bench's size for its 1024x2048 source
    result: dict = {"weights": DEFAULT_WEIGHTS.name, "engine_alone": [], "bench": {}}
    for size in ((512, 1024), tuple(default)):
        with tempfile.TemporaryDirectory(prefix="rtseg-auto-") as cache:
            os.environ["RTSEG_CACHE"] = cache  # a first run: exports and probe from nothing
            row = engine_alone(size, args.rounds, args.calls)
        result["engine_alone"].append(row)
        print(f"{size[0]}x{size[1]}: auto picked {row['auto_pick']} (first open {row['first_open_s']} s: exports "
              f"{row['export_s']} s, probe {row['probe_s']} s); engine alone fps {row['engine_alone_fps']}; "
              f"auto / fastest forced ({row['fastest_forced']}) = {row['auto_vs_fastest_forced']}")
    if args.engine_alone_only:
        if args.json:
            write_json(args.json, result)
        return
    with tempfile.TemporaryDirectory(prefix="rtseg-auto-bench-") as cache:
        env = {**os.environ, "RTSEG_CACHE": cache}
        frames = ["--frames", str(args.bench_frames), "--temporal", "off"]  # runtimes alone (the old defaults had no filter)
        result["bench"]["before_openvino_fp32"] = rtseg_bench(["--runtime", "openvino", "--precision", "fp32", *frames], env)
        result["bench"]["after_auto"] = rtseg_bench(frames, env)
        result["bench"]["auto_512x1024"] = rtseg_bench(["--size", "512x1024", *frames], env)
    before, after = result["bench"]["before_openvino_fp32"], result["bench"]["after_auto"]
    result["bench"]["pipelined_after_vs_before"] = round(after["pipelined"]["fps"] / before["pipelined"]["fps"], 3)
    for name, b in result["bench"].items():
        if isinstance(b, dict):
            print(f"rtseg bench {name}: {b['engine']} {b.get('precision')} at {b['input_size']}: pipelined "
                  f"{b['pipelined']['fps']} fps, sequential {b['sequential']['fps']}, engine alone "
                  f"{b['engine_only']['fps']}; pipelined/engine alone {b['rounds']['pipelined_vs_engine_only']}")
    print(f"defaults' pipelined fps after/before (two rtseg bench runs): {result['bench']['pipelined_after_vs_before']}x")
    with tempfile.TemporaryDirectory(prefix="rtseg-auto-turns-") as cache:
        os.environ["RTSEG_CACHE"] = cache
        turns = result["pipelined_turns"] = pipelined_turns(args.turns, args.bench_frames)
    print(f"pipelined at the defaults, taking turns ({args.turns} rounds), median fps {turns['median_fps']}: "
          f"after/before {turns['after_vs_before']}x; with the temporal filter on {turns['after_temporal_on_vs_before']}x")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
