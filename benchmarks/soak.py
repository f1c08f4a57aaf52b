"""Soak: does a long run stay flat? RSS and open file descriptors over time, for a long file-like
run (a looping synthetic source) and for a live camera that keeps dropping out and coming back.

    python benchmarks/soak.py --frames 3000 --live-frames 600 --json benchmarks/results/soak.json

The live camera is the tests' MJPEG-over-HTTP one on 127.0.0.1 (tests/pipeline/mjpeg_camera.py),
away for 1.5 s every 6 s, so every outage and reconnect path runs many times. Both parts run the
real pipeline (rtseg.pipeline.app.segment) with the bundled weights on the default runtime,
writing an H.264 overlay. A sampler thread reads /proc/self every second.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))

from rtseg.bundled import BENCH_FRAME  # noqa: E402
from rtseg.pipeline.app import segment  # noqa: E402
from rtseg.pipeline.context import RunSpec, open_run  # noqa: E402
from rtseg.pipeline.sources import Source, quiet_video_logs  # noqa: E402
from results_json import write_json  # noqa: E402  (benchmarks/, beside this script)


class Looping(Source):
    """``n`` frames cycling over 48 crops of the bundled street frame (no file, no end of data)."""

    def __init__(self, n: int, size=(360, 640)):
        big = cv2.resize(cv2.imread(str(BENCH_FRAME)), (size[1] * 2, size[0] * 2))
        self.frames = [np.ascontiguousarray(big[i * 4:i * 4 + size[0], i * 8:i * 8 + size[1]]) for i in range(48)]
        self.name, self.fps, self.size, self.frame_count, self.n, self.i = "looping", 30.0, size, n, n, 0

    def read(self, stop=None):
        if self.i >= self.n:
            return None
        self.i += 1
        return self.frames[self.i % len(self.frames)]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def sampled(fn) -> tuple[object, list[dict]]:
    """Run ``fn()`` while sampling RSS and fds every second."""
    samples, done = [], threading.Event()
    t0 = time.monotonic()

    def sample():
        while not done.wait(1.0):
            samples.append({"t": round(time.monotonic() - t0, 1), "rss_mb": round(_rss_mb(), 1), "fds": _fds()})

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        out = fn()
    finally:
        done.set()
        thread.join()
    return out, samples


def flatness(samples: list[dict]) -> dict:
    """After the first 20% (warm-up), how much RSS and fds moved."""
    if len(samples) < 5:
        return {"samples": len(samples)}
    steady = samples[len(samples) // 5:]
    rss = [s["rss_mb"] for s in steady]
    fds = [s["fds"] for s in steady]
    half = len(rss) // 2
    return {"samples": len(samples), "rss_mb_first": rss[0], "rss_mb_last": rss[-1], "rss_mb_max": max(rss),
            "rss_growth_mb": round(float(np.median(rss[half:]) - np.median(rss[:half])), 1),
            "fds_min": min(fds), "fds_max": max(fds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--live-frames", type=int, default=600)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from mjpeg_camera import MjpegCamera

    quiet_video_logs()  # FFmpeg's own lines about the dropped connections, as the CLI does
    result = {"date": time.strftime("%Y-%m-%d"), "cpu_cores": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory(prefix="rtseg-soak-") as tmp:
        run = open_run(RunSpec.from_options(Looping(args.frames), output=Path(tmp) / "file.mp4"))
        written, samples = sampled(lambda: segment(run))
        result["file"] = {"frames": written.result.frames, "fps": round(written.result.fps, 1), **flatness(samples),
                          "samples": samples}
        print(f"file-like: {written.result.frames} frames at {written.result.fps:.1f} fps; {flatness(samples)}", flush=True)

        camera = MjpegCamera(fps=25, size=(240, 320))
        stop = threading.Event()

        def flaky():
            while not stop.wait(6.0):
                camera.outage(1.5)

        threading.Thread(target=flaky, daemon=True).start()
        live_run = open_run(RunSpec.from_options(camera.url, reconnect=10, stall_timeout=3.0,
                                                 output=Path(tmp) / "live.mp4", max_frames=args.live_frames))
        live = live_run.source
        written, samples = sampled(lambda: segment(live_run))
        stop.set()
        camera.close()
        result["live"] = {"frames": written.result.frames, "outages": live.outages, "reconnects": live.reconnects,
                          "dropped": written.result.dropped, **flatness(samples), "samples": samples}
        print(f"live: {written.result.frames} frames, {live.outages} outages, {live.reconnects} reconnects; "
              f"{flatness(samples)}", flush=True)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
