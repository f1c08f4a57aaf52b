"""What ``--serve`` costs the run: the same clip with 0 (no ``--serve``), 1, 10 and 50 viewers of the
MJPEG stream on 127.0.0.1, taking turns; the run's fps and its process's CPU time per frame (user +
system of the ``rtseg run`` process alone: the viewers are threads of this script), and the frames
each viewer received.

    python benchmarks/serve.py --rounds 2 --json benchmarks/results/serve.json

Target (issue #36): CPU time per frame at most 5% above no --serve with 10 viewers.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtseg import machine  # noqa: E402
from rtseg.bundled import DEMO_CLIP  # noqa: E402


def long_clip(path: Path, times: int) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames = []
    while (f := cap.read())[0]:
        frames.append(f[1])
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (w, h))
    for _ in range(times):
        for f in frames:
            out.write(f)
    out.release()
    return path


def one_run(clip: Path, viewers: int, tmp: Path) -> dict:
    args = [sys.executable, "-m", "rtseg.cli", "run", str(clip), "--runtime", "onnxruntime", "--precision", "fp32",
            "--temporal", "off", "-o", str(tmp / "o.mp4"), "--json", str(tmp / "r.json"), "-q"]
    if viewers:
        args += ["--serve", "127.0.0.1:0"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "300"})
    got: list[int] = []
    threads = []
    if viewers:
        url = None
        while url is None:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(proc.stderr.read())
            m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None

        def watch() -> None:
            n = 0
            try:
                with urllib.request.urlopen(url + "stream.mjpg", timeout=30) as r:
                    while chunk := r.read(65536):
                        n += chunk.count(b"--rtsegframe")
            except OSError:
                pass
            got.append(n)

        threads = [threading.Thread(target=watch, daemon=True) for _ in range(viewers)]
        for t in threads:
            t.start()
    proc.communicate(timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for t in threads:
        t.join(timeout=30)
    doc = json.loads((tmp / "r.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"viewers": viewers, "fps": doc["fps"], "frames": doc["frames"], "cpu_ms_per_frame": 1e3 * cpu / doc["frames"],
            "maxrss_mb": after.ru_maxrss / 1024, "frames_each_viewer_got": sorted(got)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--viewers", default="0,1,10,50")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    counts = [int(v) for v in args.viewers.split(",")]
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="rtseg-serve-") as tmp:
        tmp = Path(tmp)
        clip = long_clip(tmp / "clip.mp4", 3)
        one_run(clip, 0, tmp)  # warm-up: the export into the cache, the page cache
        for r in range(args.rounds):
            for n in counts[r % len(counts):] + counts[:r % len(counts)]:
                runs[n].append(one_run(clip, n, tmp))
                print(json.dumps(runs[n][-1]), flush=True)
    base = statistics.median(x["cpu_ms_per_frame"] for x in runs[0]) if 0 in runs else None
    print(f"\n{'viewers':>7} {'fps':>6} {'CPU ms/frame':>13} {'vs none':>8} {'frames each viewer got (min)':>30}")
    table = []
    for n, rs in runs.items():
        cpu = statistics.median(x["cpu_ms_per_frame"] for x in rs)
        row = {"viewers": n, "fps": statistics.median(x["fps"] for x in rs), "cpu_ms_per_frame": round(cpu, 2),
               "cpu_vs_none": round(cpu / base, 3) if base else None,
               "min_frames_a_viewer_got": min((min(x["frames_each_viewer_got"]) for x in rs if x["frames_each_viewer_got"]),
                                              default=None)}
        table.append(row)
        print(f"{n:>7} {row['fps']:6.1f} {cpu:13.2f} {row['cpu_vs_none'] or 0:8.3f} {row['min_frames_a_viewer_got'] or '-':>30}")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": machine.describe(),
                                         "clip": "the demo clip 3 times (303 frames, 360x480)", "rounds": args.rounds,
                                         "table": table, "runs": {str(k): v for k, v in runs.items()}}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
