"""Does the pipeline overlap a GPU? A simulation on the CPU of what the H200 showed.

On the H200 (eager PyTorch, before CUDA graphs) the pipelined app lost to plain sequential work
(512x1024: engine alone 174 fps, sequential 78, pipelined 64). A GPU engine's ``infer`` is two
very different halves: Python launching the network's kernels, which holds the GIL the whole
time (L ms: ~5 ms for Fast-SCNN eager, well under 1 ms for a CUDA-graph replay), and the wait
for the device (a stream synchronise: D ms with the GIL released). This script fakes exactly
that engine — a pure-Python busy loop for L ms, then ``time.sleep(D)`` — and runs it beside the
REAL read (decoding an mp4), transform (resize), post (colour and blend, I420) and write (H.264
or mp4v encoding) stages, on frames small enough (``--size``) that the two cores of a small
machine are not the limit. The fake engine rather than the measured GIL shares of each stage:
the real stages keep their real mix of GIL-held Python and GIL-free native work, which is what
decides how they fare against a thread that holds the GIL.

For each (L, D) it measures, on the same frames: the pipelined run, the sequential run, the
engine alone, and the bottleneck: the rate of the slowest stage alone (its mean time in the
sequential run, where nothing competes with it). ``--rounds`` rounds, medians.

    python benchmarks/device_sim.py --json benchmarks/results/device_sim.json
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_json import write_json  # noqa: E402

from rtseg.bundled import BENCH_FRAME  # noqa: E402
from rtseg.classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE  # noqa: E402
from rtseg.engines.base import Engine  # noqa: E402
from rtseg.meta import ModelMeta  # noqa: E402
from rtseg.pipeline import Look, engine_stages, open_source, run  # noqa: E402
from rtseg.pipeline import threads  # noqa: E402
from rtseg.pipeline.bench import make_panned_video  # noqa: E402
from rtseg.pipeline.sinks import VideoSink, encoder_threads  # noqa: E402

# (launch ms, device ms): the H200's eager Fast-SCNN (~5 ms of Python launches, ~1 ms of GPU
# work), two steps down, and a CUDA-graph replay (a few hundred microseconds of Python).
GRID = ((5.0, 1.0), (2.0, 1.0), (1.0, 1.5), (0.5, 1.5), (0.2, 1.5))


class DeviceEngine(Engine):
    """A GPU engine as the host sees it: ``infer`` holds the GIL for ``launch_ms`` (pure-Python
    work, as kernel launches are) and then waits ``device_ms`` with it released (as a stream
    synchronise does). Its ids are a fixed pattern at the inference size."""

    name = "device-sim"
    device = "sim"

    def __init__(self, launch_ms: float, device_ms: float, input_size: tuple[int, int]):
        self.meta = ModelMeta(model="sim", num_classes=len(CITYSCAPES_CLASSES), class_names=CITYSCAPES_CLASSES,
                              palette=CITYSCAPES_PALETTE, input_size=input_size)
        self.input_size, self.streams = input_size, 1
        self.launch_s, self.device_s = launch_ms / 1e3, device_ms / 1e3
        h, w = input_size
        self._ids = (np.add.outer(np.arange(h) // 16, np.arange(w) // 16) % 19).astype(np.uint8)[None]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        end = time.perf_counter() + self.launch_s
        while time.perf_counter() < end:  # bytecode: the GIL is held, as while launching kernels
            pass
        time.sleep(self.device_s)  # GIL released, as cudaStreamSynchronize
        return self._ids


def engine_alone(engine: Engine, batch: np.ndarray, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        engine.infer(batch)
    return n / (time.perf_counter() - t0)


def one_case(clip: Path, tmp: Path, launch_ms: float, device_ms: float, *, frames: int, size, rounds: int) -> dict:
    engine = DeviceEngine(launch_ms, device_ms, size)
    fps: dict[str, list[float]] = {"pipelined": [], "pipelined_cpython_switch": [], "sequential": [],
                                   "engine_only": [], "bottleneck": []}
    stage_ms: dict[str, list[float]] = {}
    ours = threads.SWITCH_INTERVAL_S
    for r in range(rounds):
        modes = ["sequential", "pipelined", "pipelined_cpython_switch"]
        for mode in modes[r % 3:] + modes[:r % 3]:  # rotated, so a burst of load lands on each in turn
            threads.SWITCH_INTERVAL_S = None if mode == "pipelined_cpython_switch" else ours
            src = open_source(str(clip))
            sink = VideoSink(tmp / f"{mode}.mp4", src.fps, threads=encoder_threads(pipelined=mode == "pipelined"))
            res = run(src, engine_stages(engine, Look(), i420=sink.takes_i420), sink, sequential=mode == "sequential",
                      max_frames=frames)
            threads.SWITCH_INTERVAL_S = ours
            fps[mode].append(res.fps)
            if mode == "sequential":
                means = {k: v["mean"] for k, v in res.stages_ms.items()}
                fps["bottleneck"].append(1e3 / max(means.values()))
                for k, v in means.items():
                    stage_ms.setdefault(k, []).append(v)
        fps["engine_only"].append(engine_alone(engine, np.zeros((1, *size, 3), np.uint8), frames))
    med = {k: statistics.median(v) for k, v in fps.items()}
    return {"frame_size": list(size), "launch_ms": launch_ms, "device_ms": device_ms,
            "pipelined_fps": round(med["pipelined"], 1),
            "pipelined_cpython_switch_fps": round(med["pipelined_cpython_switch"], 1),
            "sequential_fps": round(med["sequential"], 1), "engine_only_fps": round(med["engine_only"], 1),
            "bottleneck_fps": round(med["bottleneck"], 1),
            "pipelined_vs_bottleneck": round(med["pipelined"] / med["bottleneck"], 3),
            "pipelined_vs_sequential": round(med["pipelined"] / med["sequential"], 3),
            "stages_ms": {k: round(statistics.median(v), 3) for k, v in stage_ms.items()},
            "rounds_fps": {k: [round(x, 1) for x in v] for k, v in fps.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="frames per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="128x256,256x512", help="frame (and inference) sizes HxW, comma-separated")
    ap.add_argument("--cases", default=",".join(f"{l}:{d}" for l, d in GRID), help="L:D pairs in ms")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    pairs = [tuple(float(v) for v in c.split(":")) for c in args.cases.split(",")]
    cpython = sys.getswitchinterval()
    print(f"{args.frames} frames a run, {args.rounds} rounds (medians); GIL switch interval: CPython's "
          f"{cpython * 1e3:.1f} ms, the pipeline's {threads.SWITCH_INTERVAL_S * 1e3:.2f} ms")
    print(f"{'frames':>8} {'L ms':>5} {'D ms':>5} {'pipelined':>9} {'(5 ms sw)':>9} {'sequential':>10} {'engine':>7} "
          f"{'slowest':>7} {'pipe/slow':>9} {'pipe/seq':>8}  stages ms (sequential)")
    cases = []
    with tempfile.TemporaryDirectory(prefix="rtseg-devsim-") as tmp:
        for text in args.sizes.split(","):
            size = tuple(int(v) for v in text.lower().split("x"))
            clip = make_panned_video(Path(tmp) / f"clip_{text}.mp4", BENCH_FRAME, args.frames, size=size)
            for launch_ms, device_ms in pairs:
                c = one_case(clip, Path(tmp), launch_ms, device_ms, frames=args.frames, size=size, rounds=args.rounds)
                cases.append(c)
                stages = " ".join(f"{k} {v:.2f}" for k, v in c["stages_ms"].items())
                print(f"{text:>8} {launch_ms:5.1f} {device_ms:5.1f} {c['pipelined_fps']:9.1f} "
                      f"{c['pipelined_cpython_switch_fps']:9.1f} {c['sequential_fps']:10.1f} {c['engine_only_fps']:7.1f} "
                      f"{c['bottleneck_fps']:7.1f} {c['pipelined_vs_bottleneck']:9.2f} {c['pipelined_vs_sequential']:8.2f}"
                      f"  {stages}", flush=True)
    if args.json is not None:
        write_json(args.json, {"frames": args.frames, "rounds": args.rounds,
                               "switch_interval_ms": {"cpython": round(cpython * 1e3, 3),
                                                      "pipeline": round(threads.SWITCH_INTERVAL_S * 1e3, 3)},
                               "cpu": _cpu(), "cores": len(os.sched_getaffinity(0)), "cases": cases})


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
