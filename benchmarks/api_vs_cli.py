"""The README's Python example against `rtseg run`, on the same 1024x2048 video, in one run.

    python benchmarks/api_vs_cli.py --json benchmarks/results/api_vs_cli.json

Both segment the video with the defaults (runtime auto, the inference size in the frame's shape)
and write the H.264 overlay. `rtseg run` reports its fps in --json (the pipeline's wall time);
the example is timed the same way: from its first result asked for to the writer closed, the
engine already loaded. Rounds alternate, and each one's ratio is taken within the round.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtseg.bundled import BENCH_FRAME  # noqa: E402
from rtseg.pipeline.bench import make_panned_video  # noqa: E402
from results_json import write_json  # noqa: E402  (benchmarks/, beside this script)

EXAMPLE = """
import sys, time, json
import rtseg
frames = rtseg.stream(sys.argv[1])  # opens the source and the engine
t0 = time.perf_counter()
n = 0
with rtseg.VideoWriter(sys.argv[2]) as out:
    for r in frames:
        out.write(r)
        n += 1
print(json.dumps({"frames": n, "fps": n / (time.perf_counter() - t0)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtseg-api-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "RTSEG_CACHE": str(tmp / "cache")}
        clip = make_panned_video(tmp / "street_1024x2048.mp4", BENCH_FRAME, args.frames)
        subprocess.run([sys.executable, "-m", "rtseg.cli", "run", str(clip), "-o", str(tmp / "warm.mp4"), "-q",
                        "--max-frames", "2"], env=env, check=True, capture_output=True)  # the one-time export
        cli, api = [], []
        for r in range(args.rounds):
            for name in (("cli", "api") if r % 2 == 0 else ("api", "cli")):
                if name == "cli":
                    subprocess.run([sys.executable, "-m", "rtseg.cli", "run", str(clip), "-o", str(tmp / "cli.mp4"),
                                    "-q", "--json", str(tmp / "cli.json")], env=env, check=True, capture_output=True)
                    summary = json.loads((tmp / "cli.json").read_text())
                    cli.append(summary["fps"])
                else:
                    proc = subprocess.run([sys.executable, "-c", EXAMPLE, str(clip), str(tmp / "api.mp4")], env=env,
                                          check=True, capture_output=True, text=True)
                    api.append(json.loads(proc.stdout.strip().splitlines()[-1])["fps"])
            print(f"round {r + 1}: rtseg run {cli[-1]:.1f} fps, Python example {api[-1]:.1f} fps", flush=True)
        runtime, size = summary["runtime"], summary["input_size"]
    ratios = [a / c for a, c in zip(api, cli)]
    result = {"video": f"{args.frames} frames, 1024x2048, panned over {BENCH_FRAME.name}", "runtime": runtime,
              "input_size": size, "cli_fps": cli, "api_fps": api, "cli_fps_median": statistics.median(cli),
              "api_fps_median": statistics.median(api), "api_vs_cli": round(statistics.median(ratios), 3),
              "date": time.strftime("%Y-%m-%d"), "cpu_cores": len(os.sched_getaffinity(0))}
    print(f"\nPython example / rtseg run: {result['api_vs_cli']:.2f} (target >= 0.90); "
          f"{result['api_fps_median']:.1f} against {result['cli_fps_median']:.1f} fps ({runtime}, {size[0]}x{size[1]})")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
