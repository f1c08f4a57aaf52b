"""Choosing a network: parameters, GMACs and engine-only latency of every registered network.

For each network (untrained, CamVid's 11 classes: latency does not depend on the weights'
values): parameters; multiply-accumulates of one forward pass at each size, counted by PyTorch's
FlopCounterMode (convolutions and matrix products; elementwise work, pooling and the final
bilinear resize are not MACs); and engine-only latency (``engine.infer`` on one real frame
already at the inference size, batch 1: normalise, network, argmax, ids back; see
engine_latency.py) on each CPU runtime, median of ``--runs`` calls after ``--warmup``.

    python benchmarks/networks.py --json benchmarks/results/networks.json

Runtimes, timed one network and size at a time, runtimes back to back, so that their ratios
share the machine's state: PyTorch fp32 eager; ONNX Runtime fp32; OpenVINO f32 (what
``--runtime auto`` runs on a CPU); OpenVINO bf16 where the CPU has it (what ``--runtime
openvino`` runs there).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import cv2
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_latency import time_engine  # noqa: E402  (a sibling script: same timing, same definition)
from results_json import write_json  # noqa: E402

from rtseg import create_model, list_models, load_engine  # noqa: E402
from rtseg.bundled import BENCH_FRAME  # noqa: E402
from rtseg.engines.base import parse_size  # noqa: E402
from rtseg.export.onnx import export_onnx  # noqa: E402
from rtseg.formats.checkpoint import save_checkpoint  # noqa: E402
from rtseg.meta import ModelMeta  # noqa: E402

NUM_CLASSES = 11  # CamVid


def gmacs(net: torch.nn.Module, size: tuple[int, int]) -> float:
    """Multiply-accumulates (x 1e9) of one forward pass at ``size``, batch 1."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(torch.zeros(1, 3, *size))
    return counter.get_total_flops() / 2 / 1e9


RUNTIMES = {  # column -> (runtime, precision)
    "pytorch": ("pytorch", None),  # fp32 eager, channels-last
    "onnxruntime": ("onnxruntime", None),  # fp32
    "openvino": ("openvino", "f32"),  # what --runtime auto picks on a CPU
    "openvino_bf16": ("openvino", "bf16"),  # what --runtime openvino picks where the CPU has bf16
}


def runtimes() -> list[str]:
    """The columns this machine can run."""
    names = ["pytorch", "onnxruntime"]
    try:
        import openvino  # noqa: F401
    except ImportError:
        return names
    from rtseg.engines.openvino_engine import cpu_has_bf16

    names.append("openvino")
    if cpu_has_bf16():
        names.append("openvino_bf16")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(list_models()), help="comma-separated registered names")
    ap.add_argument("--sizes", default="512x1024,1024x2048", help="comma-separated HxW")
    ap.add_argument("--runtimes", default="", help=f"comma-separated subset of {','.join(RUNTIMES)} [default: all this machine has]")
    ap.add_argument("--runs", type=int, default=5, help="timed calls per network, size and runtime (>= 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    ap.add_argument("--json", dest="json_path", help="write the results here")
    args = ap.parse_args(argv)
    if args.runs < 3:
        ap.error("--runs must be at least 3")
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(list_models()))
    if unknown:
        ap.error(f"unknown network(s) {', '.join(unknown)}; registered: {', '.join(list_models())}")
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    names = [n for n in args.runtimes.split(",") if n] or runtimes()
    if set(names) - set(RUNTIMES):
        ap.error(f"unknown runtime(s) {', '.join(sorted(set(names) - set(RUNTIMES)))}; choose from {', '.join(RUNTIMES)}")
    frame = cv2.imread(str(BENCH_FRAME))
    if frame is None:
        ap.error(f"cannot read the benchmark frame {BENCH_FRAME}")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            torch.manual_seed(0)
            net = create_model(model, num_classes=NUM_CLASSES).eval()
            meta = ModelMeta.for_dataset("camvid", model=model)
            weights = save_checkpoint(Path(tmp) / f"{model}.pt", net, meta)
            row = {"model": model, "params": sum(p.numel() for p in net.parameters()),
                   "gmacs": {f"{h}x{w}": round(gmacs(net, (h, w)), 2) for h, w in sizes}, "latency_ms": {}}
            for h, w in sizes:
                batch = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)[None]
                onnx_path = export_onnx(net, meta, Path(tmp) / f"{model}_{h}x{w}.onnx", size=(h, w)) \
                    if set(names) - {"pytorch"} else None
                for name in names:
                    runtime, precision = RUNTIMES[name]
                    kw = {"precision": precision} if precision else {}
                    engine = (load_engine(weights, size=(h, w), runtime="pytorch") if runtime == "pytorch"
                              else load_engine(onnx_path, runtime=runtime, **kw))
                    timing = time_engine(engine, batch, args.runs, args.warmup)
                    row["latency_ms"].setdefault(f"{h}x{w}", {})[name] = {
                        "precision": getattr(engine, "precision", "fp32"), **timing}
                    print(f"  {model:14s} {h}x{w} {name:12s} median {timing['median_ms']:8.1f} ms", file=sys.stderr, flush=True)
                    del engine
            rows.append(row)

    header = f"{'network':14s} {'params':>7s} " + " ".join(f"{'GMACs ' + f'{h}x{w}':>16s}" for h, w in sizes)
    lat_cols = [(f"{h}x{w}", n) for h, w in sizes for n in names]
    header += " " + " ".join(f"{n + ' ' + s:>24s}" for s, n in lat_cols)
    print(f"\nengine-only latency (ms, median of {args.runs}), batch 1, {len(os.sched_getaffinity(0))} cores")
    print(header)
    for r in rows:
        line = f"{r['model']:14s} {r['params'] / 1e6:6.2f}M " + " ".join(f"{r['gmacs'][f'{h}x{w}']:16.2f}" for h, w in sizes)
        line += " " + " ".join(f"{r['latency_ms'][s][n]['median_ms']:24.1f}" for s, n in lat_cols)
        print(line)
    if args.json_path:
        out = {"benchmark": "networks", "weights": f"untrained, {NUM_CLASSES} classes (latency does not depend on the values)",
               "frame": BENCH_FRAME.name, "batch": 1, "runs": args.runs, "warmup": args.warmup,
               "torch": torch.__version__, "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
               "macs": "torch.utils.flop_counter.FlopCounterMode: convolutions and matrix products, FLOPs / 2",
               "results": rows}
        write_json(args.json_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
