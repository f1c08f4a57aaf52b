"""What the ids made on the host save: each CPU runtime with and without its graph's Resize + ArgMax tail.

For a model (default: the shipped Fast-SCNN at 360x480; ``--engine`` any ONNX file rtseg runs,
e.g. an ultralytics export) and each runtime and precision (ONNX Runtime fp32, OpenVINO fp32, and
OpenVINO bf16 where the CPU has it), two engines on one thread (OpenVINO's latency hint):
``host_ids=False`` (the whole graph: the network,
then the bilinear enlargement of its 1/8 scores and the ArgMax) and ``host_ids=True`` (the
network alone, the ids made by rtseg.engines.host_ids). Frames: the demo clip (real street
video, so the maps have the edges a trained model's have). Each round times every engine over
the frames, the engines taking turns; medians over the rounds. Also: the host's own share (ms a
frame, measured apart on the same scores), the share of score cells on an edge, and how many
pixels' ids agree between the two.

    python benchmarks/host_ids.py --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_json import write_json  # noqa: E402

from rtseg.bundled import DEMO_CLIP  # noqa: E402
from rtseg.engines import open_engine  # noqa: E402
from rtseg.engines.host_ids import ids_from_scores  # noqa: E402
from rtseg.engines.openvino_engine import cpu_has_bf16  # noqa: E402


def _frames(count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    return frames


def _edge_share(scores: np.ndarray) -> float:
    """Share of the cells between four score samples (edges repeated) whose argmaxes differ."""
    a = np.pad(scores.argmax(0), 1, mode="edge")
    tl = a[:-1, :-1]
    return float(((tl != a[:-1, 1:]) | (tl != a[1:, :-1]) | (tl != a[1:, 1:])).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default=None, help="an ONNX file (default: the shipped Fast-SCNN)")
    ap.add_argument("--size", default="360x480", help="inference size for the shipped weights (HxW)")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "host_ids.json")
    args = ap.parse_args()
    frames = _frames(args.frames)
    precisions = [("onnxruntime", "fp32"), ("openvino", "fp32")] + ([("openvino", "bf16")] if cpu_has_bf16() else [])
    size = None if args.engine else args.size
    engines = {}
    for p in precisions:
        for host in (False, True):
            engines[(p, host)] = open_engine(args.engine, runtime=p[0], precision=p[1], size=size, threads=1,
                                             note=lambda _: None, host_ids=host)
    any_engine = next(iter(engines.values()))
    batches = [any_engine.preprocess([f]) for f in frames]
    times: dict[tuple[str, bool], list[float]] = {k: [] for k in engines}
    for _ in range(args.rounds):
        for key, engine in engines.items():
            engine.infer(batches[0])
            t0 = time.perf_counter()
            for b in batches:
                engine.infer(b)
            times[key].append((time.perf_counter() - t0) / len(batches) * 1000)
    rows = []
    for p in precisions:
        whole, host = engines[(p, False)], engines[(p, True)]
        scores = [host.infer_scores(b)[1][0].astype(np.float32) if host.has_scores else None for b in batches]
        agree = statistics.mean(float((whole.infer(b) == host.infer(b)).mean()) for b in batches)
        host_ms, edges = None, None
        if host.ids_on_host and scores[0] is not None:
            scale = (host.input_size[0] // scores[0].shape[1], host.input_size[1] // scores[0].shape[2])
            t0 = time.perf_counter()
            for s in scores:
                ids_from_scores(s, scale)
            host_ms = (time.perf_counter() - t0) / len(scores) * 1000
            edges = statistics.mean(_edge_share(s) for s in scores)
        ms_whole, ms_host = statistics.median(times[(p, False)]), statistics.median(times[(p, True)])
        rows.append({"runtime": p[0], "precision": p[1], "whole_ms": ms_whole, "host_ids_ms": ms_host, "speedup": ms_whole / ms_host,
                     "host_part_ms": host_ms, "edge_cells": edges, "ids_agree": agree,
                     "host_ids_used": host.ids_on_host})
    h, w = any_engine.input_size
    print(f"\n{any_engine.meta.model} at {h}x{w}, 1 thread, {len(frames)} demo-clip frames, "
          f"medians of {args.rounds} rounds")
    print(f"{'runtime':13}{'precision':10}{'whole ms':>10}{'host ids ms':>13}{'speedup':>9}{'host part ms':>14}{'edge cells':>12}"
          f"{'ids agree':>11}")
    for r in rows:
        part = f"{r['host_part_ms']:.2f}" if r["host_part_ms"] is not None else "-"
        edge = f"{r['edge_cells']:.1%}" if r["edge_cells"] is not None else "-"
        print(f"{r['runtime']:13}{r['precision']:10}{r['whole_ms']:10.2f}{r['host_ids_ms']:13.2f}{r['speedup']:8.2f}x{part:>14}"
              f"{edge:>12}{r['ids_agree']:11.4%}")
    write_json(args.json, {"date": time.strftime("%Y-%m-%d"), "model": any_engine.meta.model, "size": [h, w],
                           "frames": len(frames), "rounds": args.rounds, "rows": rows,
                           "command": "python benchmarks/host_ids.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
