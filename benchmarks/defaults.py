"""What a new user gets: `rtseg run CLIP` with the defaults against `--runtime pytorch` at the
same inference size, on a 960x540 clip, and `rtseg bench` with the defaults.

    python benchmarks/defaults.py --json benchmarks/results/defaults.json

The clip is 221 frames at 540x960 (HxW), panned over the bundled street frame. Runs alternate
(default, pytorch, default, ...) for ``--rounds`` rounds through the real CLI in subprocesses,
so the first-run export is counted once (in the first round, reported apart) and not again.
fps is frames over the pipeline's wall time (from ``--json``); class ids are compared on every
frame through ``--masks``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtseg.bundled import BENCH_FRAME  # noqa: E402
from rtseg.engines import default_size  # noqa: E402
from rtseg.bundled import DEFAULT_WEIGHTS  # noqa: E402
from rtseg.pipeline.bench import make_panned_video  # noqa: E402
from results_json import write_json  # noqa: E402  (benchmarks/, beside this script)


def rtseg(*args, env) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rtseg.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"rtseg {' '.join(map(str, args))} failed:\n{proc.stderr[-2000:]}")
    return {"process_s": time.perf_counter() - t0, "stderr": proc.stderr}


def agreement(a: Path, b: Path) -> tuple[float, int]:
    files = sorted(a.glob("*.png"))
    same = total = 0
    for f in files:
        x, y = cv2.imread(str(f), cv2.IMREAD_UNCHANGED), cv2.imread(str(b / f.name), cv2.IMREAD_UNCHANGED)
        same += int((x == y).sum())
        total += x.size
    return same / max(total, 1), len(files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=221)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtseg-defaults-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "RTSEG_CACHE": str(tmp / "cache"), "COLUMNS": "120"}  # a new user's empty cache
        clip = make_panned_video(tmp / "highway_540x960.mp4", BENCH_FRAME, args.frames, size=(540, 960))
        h, w = default_size(DEFAULT_WEIGHTS, (540, 960))
        fps = {"default": [], "pytorch": []}
        first_run_s = None
        for r in range(args.rounds):
            for name in ("default", "pytorch"):
                extra = [] if name == "default" else ["--runtime", "pytorch", "--size", f"{h}x{w}"]
                out = tmp / f"{name}_{r}"
                res = rtseg("run", clip, "-o", out.with_suffix(".mp4"), "--json", out.with_suffix(".json"), "--quiet",
                            *(["--masks", tmp / f"masks_{name}"] if r == 0 else []), *extra, env=env)
                summary = json.loads(out.with_suffix(".json").read_text())
                if name == "default" and r == 0:
                    first_run_s = res["process_s"]
                    exported = "exporting" in res["stderr"]
                    runtime, streams, size = summary["runtime"], summary["streams"], summary["input_size"]
                assert summary["frames"] == args.frames, summary
                fps[name].append(summary["fps"])
                print(f"round {r + 1} {name}: {summary['fps']:.1f} fps ({summary['runtime']}, "
                      f"{summary['input_size'][0]}x{summary['input_size'][1]})", flush=True)
        agree, n_masks = agreement(tmp / "masks_default", tmp / "masks_pytorch")
        bench_json = tmp / "bench.json"
        rtseg("bench", "--json", bench_json, env=env)
        bench = json.loads(bench_json.read_text())
    med = {k: statistics.median(v) for k, v in fps.items()}
    ratios = [d / p for d, p in zip(fps["default"], fps["pytorch"])]
    result = {
        "clip": f"{args.frames} frames, 540x960, panned over {BENCH_FRAME.name}",
        "default": {"runtime": runtime, "streams": streams, "input_size": size, "fps": fps["default"],
                    "fps_median": med["default"], "first_run_process_s": round(first_run_s, 2), "exported": exported},
        "pytorch": {"runtime": "pytorch", "input_size": [h, w], "fps": fps["pytorch"], "fps_median": med["pytorch"]},
        "default_vs_pytorch": round(statistics.median(ratios), 3),
        "ids_agreement": round(agree, 5), "frames_compared": n_masks,
        "bench_defaults": {"runtime": bench["engine"], "input_size": bench["input_size"], "streams": bench.get("streams"),
                           "pipelined_fps": bench["pipelined"]["fps"], "sequential_fps": bench["sequential"]["fps"],
                           "engine_only_fps": bench["engine_only"]["fps"],
                           "pipelined_vs_sequential": bench["rounds"]["pipelined_vs_sequential"]},
        "date": time.strftime("%Y-%m-%d"), "cpu_cores": len(os.sched_getaffinity(0)),
    }
    print(f"\nrtseg run on a 540x960 clip ({args.frames} frames), medians of {args.rounds} rounds:")
    print(f"  default ({runtime}, {streams} streams, {size[0]}x{size[1]}): {med['default']:.1f} fps")
    print(f"  --runtime pytorch ({h}x{w}): {med['pytorch']:.1f} fps")
    print(f"  default / pytorch: {result['default_vs_pytorch']:.2f}x (target 2x); ids agree on {100 * agree:.2f}% "
          f"of pixels (target 98.5%)")
    b = result["bench_defaults"]
    print(f"rtseg bench (defaults: {b['runtime']}, {b['input_size'][0]}x{b['input_size'][1]}): pipelined "
          f"{b['pipelined_fps']:.1f} fps, sequential {b['sequential_fps']:.1f}: {b['pipelined_vs_sequential']:.2f}x (target 1.3x)")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
