"""Engine-only latency: ``engine.infer`` on one real frame already resized to the inference size
(batch 1), so it times what the engine does (upload, normalise, network, argmax, ids back) and
nothing of the host's resize or the video I/O. Median and p95 of ``--runs`` timed calls after
``--warmup`` untimed ones, for every engine load_engine offers here, at 512x1024 and 1024x2048.

    python benchmarks/engine_latency.py --json benchmarks/results/engine_latency.json

ONNX files and TensorRT plans are exported at each size into a temporary folder (static shapes,
fp32; TensorRT fp16). Latency does not depend on the weights' values: without ``--weights`` and
without the bundled weights an untrained CamVid Fast-SCNN is used (and the JSON says so).
"""
from __future__ import annotations

import argparse
import platform
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
from rtseg.engines.base import parse_size
from rtseg.formats.checkpoint import build_from_checkpoint, save_checkpoint
from results_json import write_json  # benchmarks/results_json.py, beside this script


def _weights(arg: str | None, tmp: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), arg
    if DEFAULT_WEIGHTS.is_file():
        return DEFAULT_WEIGHTS, str(DEFAULT_WEIGHTS.name)
    from rtseg import create_model
    from rtseg.meta import ModelMeta

    torch.manual_seed(0)
    path = save_checkpoint(tmp / "untrained.pt", create_model("fastscnn", num_classes=11).eval(),
                           ModelMeta.for_dataset("camvid"))
    return path, "untrained fastscnn (camvid, 11 classes)"


def _available(device: str) -> list[str]:
    names = ["pytorch", "onnxruntime"]
    try:
        import openvino  # noqa: F401

        names.append("openvino")
    except ImportError:
        pass
    if device != "cpu" and torch.cuda.is_available():
        try:
            import tensorrt  # noqa: F401

            names.append("tensorrt")
        except ImportError:
            pass
    return names


def _artifact(name: str, weights: Path, size: tuple[int, int], tmp: Path) -> tuple[Path, dict]:
    h, w = size
    if name == "pytorch":
        return weights, {}
    if name in ("onnxruntime", "openvino"):
        from rtseg.export.onnx import export_onnx

        path = tmp / f"m_{h}x{w}.onnx"
        if not path.exists():
            model, meta = build_from_checkpoint(weights)
            export_onnx(model, meta, path, size=size)
        return path, {"runtime": name}
    from rtseg.export.tensorrt import export_engine

    path = tmp / f"m_{h}x{w}.plan"
    return export_engine(weights, path, size=size, fp16=True, int8=False, calib=None, workspace_gb=2.0), {}


def time_engine(engine, batch: np.ndarray, runs: int, warmup: int) -> dict:
    """Median / p95 / min of ``runs`` infer calls (ms)."""
    for _ in range(warmup):
        engine.infer(batch)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.infer(batch)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(p95, 2), "min_ms": round(times[0], 2),
            "runs": runs, "all_ms": [round(t, 2) for t in times]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="rtseg checkpoint [default: bundled weights, else an untrained network]")
    ap.add_argument("--sizes", default="512x1024,1024x2048", help="comma-separated HxW")
    ap.add_argument("--engines", default="", help="comma-separated subset of pytorch,onnxruntime,openvino,tensorrt")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per engine and size (>= 5)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    ap.add_argument("--frame", default=str(BENCH_FRAME), help="the real frame to segment")
    ap.add_argument("--json", dest="json_path", help="write the results here")
    args = ap.parse_args(argv)
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    frame = cv2.imread(args.frame)
    if frame is None:
        ap.error(f"cannot read --frame {args.frame}")
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    names = [n for n in args.engines.split(",") if n] or _available(args.device)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        weights, weights_desc = _weights(args.weights, Path(tmp))
        for size in sizes:
            batch = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)[None]  # (1, h, w, 3) uint8
            for name in names:
                path, kw = _artifact(name, weights, size, Path(tmp))
                device = "cuda" if name == "tensorrt" else args.device
                engine = load_engine(path, device=device, size=size, **kw)
                row = {"engine": engine.name, "device": engine.device, "size": list(size)}
                row.update(time_engine(engine, batch, args.runs, args.warmup))
                results.append(row)
                print(f"  {engine.name:12s} {engine.device:6s} {size[0]}x{size[1]}: median {row['median_ms']:.1f} ms",
                      file=sys.stderr, flush=True)
                del engine

    print(f"\nengine-only latency, batch 1, {args.runs} runs after {args.warmup} warm-up ({weights_desc})")
    print(f"{'engine':12s} {'device':7s} {'size':>10s} {'median ms':>10s} {'p95 ms':>8s} {'min ms':>8s} {'fps':>7s}")
    for r in results:
        size = f"{r['size'][0]}x{r['size'][1]}"
        print(f"{r['engine']:12s} {r['device']:7s} {size:>10s} {r['median_ms']:10.1f} {r['p95_ms']:8.1f} "
              f"{r['min_ms']:8.1f} {1e3 / r['median_ms']:7.1f}")
    if args.json_path:
        out = {"benchmark": "engine_latency", "weights": weights_desc, "frame": Path(args.frame).name,
               "batch": 1, "runs": args.runs, "warmup": args.warmup, "torch": torch.__version__,
               "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
               "results": results}
        write_json(args.json_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
