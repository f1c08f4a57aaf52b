"""Where the CPU goes in `rtseg bench`'s two runs, and the most pipelining can give on this machine.

Runs the bench's defaults (the bundled weights, ``--runtime auto``, the default inference size
and streams, H.264 output) sequentially and pipelined over a 1024x2048 video panned over the
bundled street frame, ``--rounds`` times alternating, and samples every thread's CPU time from
/proc (Linux) while they run. It prints, per mode, fps, CPU milliseconds per frame by thread and
the cores kept busy on average, and then the bound: a pipelined run cannot take less than its
CPU work per frame divided by the cores, so pipelined/sequential can be at most

    (sequential wall per frame) / (pipelined CPU per frame / cores).

When the sequential run already keeps most cores busy (a multi-threaded network and encoder),
that bound is low, whatever the pipeline does.

    python benchmarks/pipeline_cpu.py --json benchmarks/results/pipeline_cpu.json
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_json import write_json  # noqa: E402

from rtseg.bundled import BENCH_FRAME, DEFAULT_WEIGHTS  # noqa: E402
from rtseg.engines import auto_streams, open_engine  # noqa: E402
from rtseg.pipeline import Look, engine_stages, open_source, run  # noqa: E402
from rtseg.pipeline.bench import make_panned_video  # noqa: E402
from rtseg.pipeline.sinks import VideoSink, encoder_threads  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _thread_cpu() -> dict[str, tuple[str, float]]:
    """{tid: (kernel thread name, user + system CPU seconds)} of this process's threads."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / TICK)
    return out


class CpuSampler:
    """Samples every thread's CPU time every 20 ms (threads that end keep their last sample) and
    names Python threads by their Python name; the others (the network's and encoder's worker
    threads, the decoder's) are grouped as "native: <kernel name>"."""

    def __init__(self):
        self.start = _thread_cpu()
        self.last: dict[str, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def _sample(self) -> None:
        names = {str(t.native_id): t.name for t in threading.enumerate()}
        for tid, (comm, seconds) in _thread_cpu().items():
            name = names.get(tid) or self.last.get(tid, (None,))[0] or f"native: {comm}"
            self.last[tid] = (name, seconds)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()

    def by_name(self) -> dict[str, float]:
        """CPU seconds per thread name over the sampled span (the sampler's own left out)."""
        totals: collections.Counter = collections.Counter()
        for tid, (name, seconds) in self.last.items():
            if name != "cpu-sampler":
                totals[name] += seconds - self.start.get(tid, ("", 0.0))[1]
        return {name: s for name, s in totals.items() if s > 0}


def one_run(video: Path, mode: str, frames: int, engines: dict, out: Path) -> dict:
    src = open_source(str(video))
    sink = VideoSink(out / f"{mode}.mp4", src.fps, threads=encoder_threads(pipelined=mode == "pipelined"))
    stages = engine_stages(engines[mode], Look(), i420=sink.takes_i420)
    with CpuSampler() as cpu:
        result = run(src, stages, sink, sequential=mode == "sequential", max_frames=frames)
    per_frame = {name: round(s / result.frames * 1e3, 2) for name, s in sorted(cpu.by_name().items(), key=lambda kv: -kv[1])}
    total_ms = sum(per_frame.values())
    return {"fps": round(result.fps, 2), "wall_ms_per_frame": round(1e3 / result.fps, 2),
            "cpu_ms_per_frame": round(total_ms, 2), "cores_busy": round(total_ms * result.fps / 1e3, 2),
            "cpu_ms_per_frame_by_thread": per_frame}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100, help="frames per run")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (sequential, pipelined), alternating")
    ap.add_argument("--json", dest="json_path", help="write the results here")
    args = ap.parse_args(argv)
    if not Path("/proc/self/task").is_dir():
        ap.error("this benchmark reads per-thread CPU times from /proc: Linux only")
    if not DEFAULT_WEIGHTS.is_file():
        ap.error(f"the bundled weights are missing: {DEFAULT_WEIGHTS}")
    cores = len(os.sched_getaffinity(0))
    frame_size = (1024, 2048)
    streams = auto_streams(None, "cpu", live=False)
    engines = {"sequential": open_engine(str(DEFAULT_WEIGHTS), device="cpu", frame_size=frame_size, streams=1),
               "pipelined": open_engine(str(DEFAULT_WEIGHTS), device="cpu", frame_size=frame_size, streams=streams)}
    print(f"{engines['pipelined'].describe()}; pipelined: {streams} streams; {cores} cores", file=sys.stderr)
    runs: dict[str, list[dict]] = {"sequential": [], "pipelined": []}
    with tempfile.TemporaryDirectory(prefix="rtseg-pipeline-cpu-") as tmp:
        video = make_panned_video(Path(tmp) / "pan.mp4", BENCH_FRAME, args.frames)
        one_run(video, "sequential", min(args.frames, 20), engines, Path(tmp))  # warm-up
        for r in range(args.rounds):
            for mode in (("sequential", "pipelined") if r % 2 == 0 else ("pipelined", "sequential")):
                runs[mode].append(one_run(video, mode, args.frames, engines, Path(tmp)))
                print(f"  round {r + 1} {mode:10s} {runs[mode][-1]['fps']:6.1f} fps, "
                      f"{runs[mode][-1]['cores_busy']:.2f} cores busy", file=sys.stderr, flush=True)

    def med(mode: str, key: str) -> float:
        return round(statistics.median(x[key] for x in runs[mode]), 2)

    ratio = round(statistics.median(p["fps"] / s["fps"] for p, s in zip(runs["pipelined"], runs["sequential"])), 3)
    bound = round(med("sequential", "wall_ms_per_frame") / (med("pipelined", "cpu_ms_per_frame") / cores), 3)
    print(f"\n{'mode':11s} {'fps':>6s} {'wall ms/frame':>14s} {'CPU ms/frame':>13s} {'cores busy':>11s}")
    for mode in runs:
        print(f"{mode:11s} {med(mode, 'fps'):6.1f} {med(mode, 'wall_ms_per_frame'):14.1f} "
              f"{med(mode, 'cpu_ms_per_frame'):13.1f} {med(mode, 'cores_busy'):11.2f}")
    for mode in runs:
        mid = sorted(runs[mode], key=lambda x: x["fps"])[len(runs[mode]) // 2]
        print(f"\nCPU ms per frame by thread, {mode} (median round):")
        for name, ms in mid["cpu_ms_per_frame_by_thread"].items():
            print(f"  {name:28s} {ms:6.1f}")
    print(f"\npipelined / sequential: {ratio:.2f}x (median of the rounds' ratios)")
    print(f"bound on {cores} cores: sequential wall per frame / (pipelined CPU per frame / {cores}) = {bound:.2f}x")
    if args.json_path:
        write_json(args.json_path, {
            "benchmark": "pipeline_cpu", "engine": engines["pipelined"].describe(), "streams": streams,
            "cores": cores, "frames": args.frames, "rounds": args.rounds, "source": "1024x2048, panned street frame",
            "pipelined_vs_sequential": ratio, "bound": bound,
            "median": {mode: {k: med(mode, k) for k in ("fps", "wall_ms_per_frame", "cpu_ms_per_frame", "cores_busy")}
                       for mode in runs},
            "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
