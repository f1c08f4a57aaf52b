"""rtseg against the straightforward video loop a careful course project writes, on the same
1024x2048 video (the bundled real street frame, panned), at the same inference size (the frame's
own, 1024x2048, unless --size says otherwise), with the same weights.

The naive loop: one thread; cv2 read; BGR->RGB and float normalisation in numpy; PyTorch eager
fp32 forward (logits at the input size); argmax; ``palette[ids]`` in numpy; ``cv2.addWeighted``
blend; ``cv2.VideoWriter`` (mp4v). Nothing in it is wasteful on purpose: ``torch.no_grad``,
weights loaded once, one forward per frame, the threads PyTorch picks by default.

rtseg: the pipelined app as ``rtseg run`` runs it (the same library calls), with the same weights
exported to ONNX at the inference size (``--engine onnx``: load_engine's runtime choice, i.e.
OpenVINO on CPU when installed, else ONNX Runtime; ``--runtime`` forces one) or run by PyTorch
(``--engine pt``).

    python benchmarks/vs_naive.py --frames 30 --json benchmarks/results/vs_naive.json

Also reported: the host work outside the network per frame, naive (normalise; argmax + colour +
blend) against rtseg's transform + post stages (timed in rtseg's sequential mode, uncontended).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from rtseg import load_engine
from rtseg.bundled import BENCH_FRAME, DEFAULT_WEIGHTS
from rtseg.engines import auto_streams
from rtseg.engines.base import parse_size
from rtseg.formats.checkpoint import build_from_checkpoint, save_checkpoint
from rtseg.pipeline import Look, engine_stages, open_source, run
from rtseg.pipeline.sinks import VideoSink, encoder_threads
from rtseg.pipeline.bench import make_panned_video
from results_json import write_json  # benchmarks/results_json.py, beside this script


def naive_loop(video: Path, weights: Path, out: Path, *, size: tuple[int, int] | None, alpha: float = 0.5) -> dict:
    """The course-project loop. Returns fps, wall and per-step milliseconds (median per frame)."""
    model, meta = build_from_checkpoint(weights)
    model.eval()
    mean = np.array(meta.mean, np.float32)
    std = np.array(meta.std, np.float32)
    palette = np.array(meta.palette, np.uint8)[:, ::-1].copy()  # RGB -> BGR, as OpenCV writes
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    steps: dict[str, list[float]] = {k: [] for k in ("read", "normalise", "forward", "argmax", "colour+blend", "write")}
    writer = None
    frames = 0
    t_start = time.perf_counter()
    with torch.no_grad():
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            t1 = time.perf_counter()
            image = frame if size is None else cv2.resize(frame, (size[1], size[0]))
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            x = (rgb.astype(np.float32) / 255.0 - mean) / std  # (H, W, 3) float32
            x = torch.from_numpy(x.transpose(2, 0, 1).copy()).unsqueeze(0)  # (1, 3, H, W)
            t2 = time.perf_counter()
            logits = model(x)  # (1, C, H, W) at the input size
            t3 = time.perf_counter()
            ids = logits.argmax(dim=1)[0].numpy()  # int64 (H, W)
            if size is not None:
                ids = cv2.resize(ids.astype(np.uint8), (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
            t4 = time.perf_counter()
            colour = palette[ids]  # (H, W, 3) uint8
            blended = cv2.addWeighted(frame, 1 - alpha, colour, alpha, 0)
            t5 = time.perf_counter()
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
            writer.write(blended)
            t6 = time.perf_counter()
            for k, a, b in (("read", t0, t1), ("normalise", t1, t2), ("forward", t2, t3), ("argmax", t3, t4),
                            ("colour+blend", t4, t5), ("write", t5, t6)):
                steps[k].append((b - a) * 1e3)
            frames += 1
    wall = time.perf_counter() - t_start
    if writer is not None:
        writer.release()
    cap.release()
    return {"fps": frames / wall, "wall_s": wall, "frames": frames,
            "steps_ms_p50": {k: statistics.median(v) for k, v in steps.items()}}


def rtseg_run(video: Path, engine_path: Path, out: Path, *, size: tuple[int, int], runtime: str | None,
              sequential: bool) -> tuple[dict, str]:
    kw = {"runtime": runtime} if runtime else {}
    streams = auto_streams(engine_path, "cpu", live=False, sequential=sequential)  # as `rtseg run` chooses
    engine = load_engine(engine_path, size=size, streams=streams, **kw)
    source = open_source(str(video))
    sink = VideoSink(out, source.fps, threads=encoder_threads(pipelined=not sequential))
    result = run(source, engine_stages(engine, Look(), i420=sink.takes_i420), sink, sequential=sequential)
    return ({"fps": result.fps, "wall_s": result.wall_s, "frames": result.frames,
             "stages_ms_p50": {k: v["p50"] for k, v in result.stages_ms.items()}}, engine.describe())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="checkpoint (.pt) [default: the bundled weights, else an untrained CamVid Fast-SCNN]")
    ap.add_argument("--frames", type=int, default=30, help="frames in the 1024x2048 test video")
    ap.add_argument("--size", default=None, help="inference size HxW for both [default: the frame's, 1024x2048]")
    ap.add_argument("--engine", choices=("onnx", "pt"), default="onnx", help="what rtseg runs the weights with")
    ap.add_argument("--runtime", default=None, help="for --engine onnx: auto, onnxruntime or openvino")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    torch.set_num_threads(torch.get_num_threads())  # PyTorch's default (one per core): what the course project gets
    size = parse_size(args.size) or (1024, 2048)
    with tempfile.TemporaryDirectory(prefix="rtseg-vs-naive-") as tmp_name:
        tmp = Path(tmp_name)
        if args.weights:
            weights, what = Path(args.weights), args.weights
        elif DEFAULT_WEIGHTS.is_file():
            weights, what = DEFAULT_WEIGHTS, DEFAULT_WEIGHTS.name
        else:
            from rtseg import create_model
            from rtseg.meta import ModelMeta

            torch.manual_seed(0)
            weights = save_checkpoint(tmp / "untrained.pt", create_model("fastscnn", num_classes=11).eval(),
                                      ModelMeta.for_dataset("camvid"))
            what = "untrained fastscnn (camvid, 11 classes): speed does not depend on the weights"
        video = make_panned_video(tmp / "street_pan.mp4", BENCH_FRAME, args.frames)
        if args.engine == "onnx":
            from rtseg.export.onnx import export_onnx

            model, meta = build_from_checkpoint(weights)
            engine_path = export_onnx(model, meta, tmp / "model.onnx", size=size)
        else:
            engine_path = weights

        print(f"video: {args.frames} frames 1024x2048 panned over {BENCH_FRAME.name}; weights: {what}", flush=True)
        print(f"inference size {size[0]}x{size[1]}", flush=True)
        naive = naive_loop(video, weights, tmp / "naive.mp4", size=None if size == (1024, 2048) else size)
        print(f"naive loop: {naive['fps']:.3f} fps ({naive['wall_s']:.1f} s)", flush=True)
        ours, engine_desc = rtseg_run(video, engine_path, tmp / "rtseg.mp4", size=size, runtime=args.runtime,
                                      sequential=False)
        print(f"rtseg run:  {ours['fps']:.3f} fps ({ours['wall_s']:.1f} s) [{engine_desc}]", flush=True)
        seq, _ = rtseg_run(video, engine_path, tmp / "rtseg_seq.mp4", size=size, runtime=args.runtime,
                           sequential=True)

    n = naive["steps_ms_p50"]
    s = seq["stages_ms_p50"]
    naive_host = n["normalise"] + n["argmax"] + n["colour+blend"]
    naive_host_no_argmax = n["normalise"] + n["colour+blend"]
    ours_host = s["transform"] + s["post"]
    speedup = ours["fps"] / naive["fps"]
    print()
    print(f"{'step (median ms/frame)':34s} {'naive':>9s} {'rtseg':>9s}")
    rows = [("read", n["read"], s["read"]), ("transform / normalise", n["normalise"], s["transform"]),
            ("network (rtseg: + argmax in-graph)", n["forward"], s["infer"]), ("argmax", n["argmax"], 0.0),
            ("post / colour + blend", n["colour+blend"], s["post"]), ("write", n["write"], s["write"])]
    for name, a, b in rows:
        print(f"{name:34s} {a:9.1f} {b:9.1f}")
    print(f"host work outside the network: naive {naive_host:.1f} ms (without argmax {naive_host_no_argmax:.1f}), "
          f"rtseg transform+post {ours_host:.1f} ms = 1/{naive_host / ours_host:.1f} "
          f"(1/{naive_host_no_argmax / ours_host:.1f} without argmax)")
    print(f"speedup: rtseg {ours['fps']:.3f} fps vs naive {naive['fps']:.3f} fps = {speedup:.2f}x "
          f"(rtseg sequential {seq['fps']:.3f} fps)")
    result = {"rtseg_fps": round(ours["fps"], 4), "naive_fps": round(naive["fps"], 4), "speedup": round(speedup, 3)}
    if args.json:
        details = {**result, "details": {
            "engine": engine_desc, "weights": what, "frames": args.frames, "input_size": list(size),
            "naive_steps_ms_p50": {k: round(v, 2) for k, v in n.items()},
            "rtseg_sequential_stages_ms_p50": {k: round(v, 2) for k, v in s.items()},
            "rtseg_sequential_fps": round(seq["fps"], 4),
            "host_ms": {"naive": round(naive_host, 2), "naive_without_argmax": round(naive_host_no_argmax, 2),
                        "rtseg_transform_plus_post": round(ours_host, 2)},
            "python": sys.version.split()[0], "torch": torch.__version__, "cv2": cv2.__version__}}
        write_json(args.json, details)


if __name__ == "__main__":
    main()
