"""A foreign ONNX file against rtseg's own export of the same weights, engine alone.

The shipped weights (models/fastscnn_camvid.pt) are exported the way other tools ship a model,
with plain ``torch.onnx.export`` of the bare network: float NCHW input with the ImageNet
normalisation left outside the graph, dynamic H and W, and one of three endings:

* ``logits``  -- scores N x 11 x H x W at the input size (torchvision / smp style);
* ``ids``     -- int64 ids N x 1 x H x W, the argmax in the graph (mmdeploy's end2end.onnx style);
* ``quarter`` -- scores at 1/4 of the input size (mmseg decode heads before their resize).

Each runs as ``--engine FILE --classes camvid --normalize imagenet`` does: wrapped once into the
cache (rtseg.engines.foreign_cache), then opened by ``rtseg.load_engine``. Against it:
``rtseg export --format onnx`` of the same ``.pt`` at the size (static shapes, what ``--runtime
onnxruntime`` on the ``.pt`` caches) and with ``--dynamic``. ``engine.infer`` on one real frame
already at the inference size (batch 1, one stream), on ONNX Runtime and OpenVINO, in one
process; the engines take turns round by round so a load change hits them all alike. Medians.

    python benchmarks/foreign.py --json benchmarks/results/foreign.json
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

from rtseg.bundled import BENCH_FRAME, DEFAULT_WEIGHTS
from rtseg.engines.base import parse_size
from rtseg.formats.checkpoint import build_from_checkpoint

KINDS = ("logits", "ids", "quarter")


class _Plain(nn.Module):
    """The bare network as another tool exports it: normalised float RGB in, ``kind`` out."""

    def __init__(self, net: nn.Module, kind: str):
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "logits":
            return self.net(x)
        if self.kind == "ids":
            return self.net(x).argmax(1, keepdim=True)  # int64 N x 1 x H x W
        import torch.nn.functional as F

        _, eighth = self.net.forward_scores(x)  # the head's scores at 1/8, enlarged to 1/4 as mmseg heads give
        return F.interpolate(eighth, size=(x.shape[2] // 4, x.shape[3] // 4), mode="bilinear", align_corners=False)


def export_plain(weights: str | Path, kind: str, path: str | Path, example: tuple[int, int] = (256, 320)) -> Path:
    """Write ``weights``' network as a plain ONNX file of ``kind`` (:data:`KINDS`) at ``path``:
    input ``input`` float32 1 x 3 x H x W (dynamic batch, H, W), no rtseg metadata."""
    net = _Plain(build_from_checkpoint(weights)[0].float().eval(), kind).eval()
    out = "ids" if kind == "ids" else "logits"
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, out: {0: "batch", 2: "h", 3: "w"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(net, (torch.zeros(1, 3, *example),), str(path), input_names=["input"], output_names=[out],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return Path(path)


def _time(engine, batch: np.ndarray, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.infer(batch)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _runtimes(asked: str) -> list[str]:
    names = [n for n in asked.split(",") if n]
    try:
        import openvino  # noqa: F401
    except ImportError:
        if "openvino" in names:
            print("openvino is not installed: skipped", file=sys.stderr)
        names = [n for n in names if n != "openvino"]
    return names


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model} ({', '.join(simd)})"


def _machine() -> dict | None:
    """rtseg.machine.describe(): the machine record every benchmark JSON carries (None without it)."""
    try:
        from rtseg.machine import describe
    except ImportError:
        return None
    return describe()


def measure(weights: Path, size: tuple[int, int], runtimes: list[str], kinds: list[str], *, runs: int,
            rounds: int, warmup: int, frame: np.ndarray, tmp: Path) -> list[dict]:
    """One row per (runtime, artifact): median ms over every timed call, and the median of each
    round's ratio to rtseg's own static export on that runtime."""
    from rtseg import load_engine
    from rtseg.engines.foreign_cache import wrapped_artifact
    from rtseg.export.onnx import export_onnx

    h, w = size
    model, meta = build_from_checkpoint(weights)
    own = {"own_static": export_onnx(model, meta, tmp / f"own_{h}x{w}.onnx", size=size),
           "own_dynamic": export_onnx(model, meta, tmp / "own_dynamic.onnx", size=size, dynamic=True)}
    foreign = {f"foreign_{k}": wrapped_artifact(export_plain(weights, k, tmp / f"plain_{k}.onnx"), classes="camvid",
                                                normalize="imagenet", note=lambda line: None) for k in kinds}
    artifacts = {**own, **foreign}
    batch = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)[None]
    rows = []
    for runtime in runtimes:
        engines = {name: load_engine(p, runtime=runtime, size=size, threads=0) for name, p in artifacts.items()}
        for e in engines.values():
            _time(e, batch, warmup)
        per_round = {name: [] for name in engines}
        for _ in range(rounds):
            for name, e in engines.items():
                per_round[name].append(_time(e, batch, runs))
        base = [statistics.median(t) for t in per_round["own_static"]]
        for name, rounds_ms in per_round.items():
            meds = [statistics.median(t) for t in rounds_ms]
            rows.append({"runtime": runtime, "artifact": name, "size": [h, w],
                         "median_ms": round(statistics.median([t for r in rounds_ms for t in r]), 2),
                         "round_medians_ms": [round(m, 2) for m in meds],
                         "vs_own_static": round(statistics.median([m / b for m, b in zip(meds, base)]), 3)})
            print(f"  {runtime:12s} {name:16s} {h}x{w}: median {rows[-1]['median_ms']:.1f} ms "
                  f"({rows[-1]['vs_own_static']:.2f}x rtseg's own static export)", file=sys.stderr, flush=True)
        del engines
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="rtseg checkpoint [default: the shipped weights]")
    ap.add_argument("--sizes", default="512x1024", help="comma-separated HxW")
    ap.add_argument("--runtimes", default="onnxruntime,openvino", help="comma-separated")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--runs", type=int, default=10, help="timed calls per engine and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the engines take turns in each")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    ap.add_argument("--frame", default=str(BENCH_FRAME), help="the real frame to segment")
    ap.add_argument("--json", dest="json_path", help="write the results here")
    args = ap.parse_args(argv)
    frame = cv2.imread(args.frame)
    if frame is None:
        ap.error(f"cannot read --frame {args.frame}")
    if not Path(args.weights).is_file():
        ap.error(f"--weights {args.weights} not found")
    kinds = [k for k in args.kinds.split(",") if k]
    if set(kinds) - set(KINDS):
        ap.error(f"--kinds takes {', '.join(KINDS)}")
    runtimes = _runtimes(args.runtimes)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtseg-foreign-bench-") as tmp:
        os.environ["RTSEG_CACHE"] = str(Path(tmp) / "cache")  # the wraps go into a throwaway cache
        for size in (parse_size(s) for s in args.sizes.split(",")):
            rows += measure(Path(args.weights), size, runtimes, kinds, runs=args.runs, rounds=args.rounds,
                            warmup=args.warmup, frame=frame, tmp=Path(tmp))
    print(f"\nengine-alone latency, batch 1, {args.rounds} rounds x {args.runs} calls ({Path(args.weights).name})")
    print(f"{'runtime':12s} {'artifact':16s} {'size':>10s} {'median ms':>10s} {'vs own static':>14s}")
    for r in rows:
        print(f"{r['runtime']:12s} {r['artifact']:16s} {r['size'][0]}x{r['size'][1]:<5d} {r['median_ms']:10.1f} "
              f"{r['vs_own_static']:13.2f}x")
    if args.json_path:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results_json import write_json  # benchmarks/results_json.py, beside this script

        import onnxruntime

        versions = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
        if "openvino" in runtimes:
            import openvino

            versions["openvino"] = openvino.__version__
        write_json(args.json_path, {
            "benchmark": "foreign", "weights": Path(args.weights).name, "frame": Path(args.frame).name,
            "batch": 1, "runs": args.runs, "rounds": args.rounds, "warmup": args.warmup, "threads": "one per core",
            "cpu": _cpu(), "cores": len(os.sched_getaffinity(0)), **versions, "machine": _machine(),
            "note": "vs_own_static: median over rounds of (this artifact's round median / rtseg's own static "
                    "export's round median) on the same runtime; below 1 is faster",
            "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
