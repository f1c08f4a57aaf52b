"""Latency of a live run at the defaults: ``rtseg run URL`` on a local 25 fps MJPEG camera (the tests'
camera on 127.0.0.1, tests/pipeline/mjpeg_camera.py), the run's ``--json`` latency and frame rate,
for this tree and, with ``--against REV``, the same command from an earlier commit, taking turns.

    python benchmarks/live_latency.py --frames 150 --runs 3 --against 44b23e1 --json benchmarks/results/live_latency.json

Since #35 ``latency_ms`` counts from the frame's arrival (the grabber's timestamp) to its write; before,
from the moment the read stage began waiting for it. Both are printed as the runs report them; the
medians over the runs are compared.
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
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))

from mjpeg_camera import MjpegCamera  # noqa: E402
from rtseg import machine  # noqa: E402


def one_run(tree: Path, url: str, frames: int, tmp: Path, tag: str) -> dict:
    out = tmp / f"{tag}.json"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "rtseg.cli", "run", url, "--max-frames", str(frames), "-o", str(tmp / f"{tag}.mp4"),
           "--json", str(out), "-q"]
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{tag}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="360x480", help="the camera's HxW")
    ap.add_argument("--against", default=None, help="an earlier commit to run the same command from")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    camera = MjpegCamera(fps=25, size=(h, w))
    trees = {"this tree": ROOT}
    with tempfile.TemporaryDirectory(prefix="rtseg-live-") as tmp:
        tmp = Path(tmp)
        if args.against:
            old = tmp / "old"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.against], check=True,
                           capture_output=True)
            trees[args.against] = old
        results: dict[str, list[dict]] = {name: [] for name in trees}
        try:
            for r in range(args.runs):
                for name, tree in trees.items():  # taking turns: a burst of load lands on both
                    results[name].append(one_run(tree, camera.url, args.frames, tmp, f"{r}-{len(results[name])}"))
        finally:
            camera.close()
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "old")],
                               capture_output=True)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine.describe(), "camera": f"MJPEG 25 fps {h}x{w}",
              "frames": args.frames, "runs": args.runs, "trees": {}}
    print(f"{'tree':<12} {'fps':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'first frame s':>14} {'runtime':>20}")
    for name, runs in results.items():
        med = {k: statistics.median(x["latency_ms"].get(k, float("nan")) for x in runs) for k in ("p50", "p95", "p99")}
        fps = statistics.median(x["fps"] for x in runs)
        first = [x.get("first_frame_s") for x in runs if x.get("first_frame_s") is not None]
        runtime = f"{runs[0]['runtime']} {runs[0].get('precision') or ''}".strip()
        report["trees"][name] = {"fps": fps, "latency_ms": med, "first_frame_s": statistics.median(first) if first else None,
                                 "runtime": runtime, "each": [x["latency_ms"] for x in runs]}
        print(f"{name:<12} {fps:6.1f} {med['p50']:7.1f} {med['p95']:7.1f} {med['p99']:7.1f} "
              f"{(statistics.median(first) if first else float('nan')):14.2f} {runtime:>20}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
