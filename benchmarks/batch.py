"""``rtseg batch`` against a shell loop of ``rtseg run``, and on a local Ray instance.

Cuts ``--clips`` short clips (``--frames`` each, at the demo's 360x480) from the bundled demo,
then times, as a user would type them: one ``rtseg run`` per clip (their sum), ``rtseg batch``
on this machine with ``--jobs 1`` and ``--jobs 2``, and ``rtseg batch --cluster ray`` (a local
instance with every CPU). Same engine options for all (``--runtime``, default auto); the engine's
export into the cache is warmed first. Prints a table and writes the JSON:

    python benchmarks/batch.py --json benchmarks/results/batch.json

The issue's targets: the local batch at most 1.1x the sum of the runs; Ray at most 10% more
than the local batch, or 3 s a video.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_json import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo" / "camvid_0016E5_val_15fps.mp4"
RTSEG = [sys.executable, "-m", "rtseg.cli"]


def cpu_info() -> dict[str, object]:
    """This machine as every benchmark JSON records it: CPU model and flags, cores, GPUs, versions."""
    from rtseg.machine import describe

    return describe()


def make_clips(folder: Path, clips: int, frames: int) -> list[Path]:
    """``clips`` H.264 clips of ``frames`` frames each, taken in turn from the demo (wrapping)."""
    import av

    with av.open(str(DEMO)) as src:
        demo = [f.to_ndarray(format="bgr24") for f in src.decode(video=0)]
        rate = src.streams.video[0].average_rate
    paths = []
    for i in range(clips):
        path = folder / f"clip_{i:02d}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=rate)
            stream.height, stream.width = demo[0].shape[:2]
            stream.pix_fmt = "yuv420p"
            for k in range(frames):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(demo[(i * frames + k) % len(demo)], format="bgr24")))
            out.mux(stream.encode())
        paths.append(path)
    return paths


def timed(command: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def batch_case(name: str, clips_dir: Path, work: Path, engine: list[str], extra: list[str]) -> dict:
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    wall = timed([*RTSEG, "batch", str(clips_dir), "-d", str(out), "-q", *engine, *extra])
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert all(r["status"] == "done" for r in lines), lines
    frames = sum(r["frames"] for r in lines)
    return {"case": name, "wall_s": round(wall, 2), "frames": frames, "fps_overall": round(frames / wall, 2),
            "video_wall_s_sum": round(sum(r["wall_s"] for r in lines), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=30, help="frames a clip (2 s at the demo's 15 fps)")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    engine = ["--runtime", args.runtime]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clips_dir = work / "clips"
        clips_dir.mkdir()
        clips = make_clips(clips_dir, args.clips, args.frames)
        timed([*RTSEG, "run", str(clips[0]), "-o", str(work / "warm.mp4"), "-q", *engine])  # the export, once
        runs = [timed([*RTSEG, "run", str(c), "-o", str(work / f"run_{c.stem}.mp4"), "-q", *engine]) for c in clips]
        cases = [batch_case("local_jobs1", clips_dir, work, engine, ["--jobs", "1"]),
                 batch_case("local_jobs2", clips_dir, work, engine, ["--jobs", "2"])]
        if not args.no_ray:
            cases.append(batch_case("ray_local", clips_dir, work, engine, ["--cluster", "ray"]))
    runs_sum = sum(runs)
    local = cases[0]
    for case in cases:
        case["vs_sum_of_runs"] = round(case["wall_s"] / runs_sum, 3)
    result = {"cpu": cpu_info(), "load_avg_1min_at_end": round(os.getloadavg()[0], 2), "runtime": args.runtime, "clips": args.clips, "frames_per_clip": args.frames,
              "clip_size": [360, 480], "run_wall_s": [round(r, 2) for r in runs], "runs_sum_s": round(runs_sum, 2),
              "cases": cases, "targets": {"batch_vs_runs_max": 1.1, "ray_extra_max": "10% or 3 s a video"}}
    ray = next((c for c in cases if c["case"] == "ray_local"), None)
    if ray is not None:
        extra = ray["wall_s"] - local["wall_s"]
        result["ray_overhead"] = {"s": round(extra, 2), "per_video_s": round(extra / args.clips, 2),
                                  "ratio": round(ray["wall_s"] / local["wall_s"], 3)}
    print(f"{args.clips} clips x {args.frames} frames, runtime {args.runtime}; sum of rtseg run: {runs_sum:.1f} s")
    print(f"{'case':12s} {'wall s':>7s} {'fps':>6s} {'x runs':>7s}")
    for c in cases:
        print(f"{c['case']:12s} {c['wall_s']:7.1f} {c['fps_overall']:6.1f} {c['vs_sum_of_runs']:7.3f}")
    if ray is not None:
        o = result["ray_overhead"]
        print(f"Ray over the local batch: +{o['s']:.1f} s ({o['per_video_s']:.2f} s a video, {o['ratio']:.2f}x)")
    if args.json is not None:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
