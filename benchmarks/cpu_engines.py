"""Every CPU inference path for Fast-SCNN, in one process, on the same real frames.

For each size (default 1024x2048 and 512x1024) it builds the paths below from one checkpoint,
times ``infer`` alone (uint8 (1, h, w, 3) BGR in, uint8 ids out: what ``rtseg bench`` calls the
engine) and compares the ids with PyTorch fp32 eager:

  pytorch_fp32            DeployModel, eager, fp32 (the reference; speedups are over it)
  pytorch_channels_last   the same with channels-last weights
  pytorch_bf16_autocast   the same under torch.autocast(bfloat16)
  onnxruntime_fp32        rtseg's ONNX export in ONNX Runtime (ORT_ENABLE_ALL, sequential)
  openvino_fp32/_bf16     the same file in OpenVINO, f32 or bf16 inference precision
  onnxruntime_int8        int8 QDQ copy (benchmarks/int8_quantize.py, CamVid train calibration)
  openvino_int8           the same int8 file in OpenVINO
  *_tail8                 a cheaper tail: argmax at 1/8 resolution, ids upsampled nearest
                          (the default tail upsamples 11-19 channels of logits bilinearly first)

Latency: median and p95 of --runs timed calls after one warm-up, the paths taking turns in
each round so that a busy machine slows them alike. Agreement: fraction of pixels whose id
equals PyTorch fp32's, on the bundled street frame and on CamVid val frames when
../shared/data is present. mIoU: CamVid val (ids resized nearest to the label size), when the
weights are CamVid weights.

    python benchmarks/cpu_engines.py --weights models/fastscnn_camvid.pt --json benchmarks/results/cpu_engines.json
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rtseg.bundled import BENCH_FRAME, DEFAULT_WEIGHTS, REPO_ROOT
from rtseg.engines.base import parse_size
from rtseg.formats.checkpoint import build_from_checkpoint
from rtseg.meta import ModelMeta
from rtseg.nets import create_model
from rtseg.nets.deploy import DeployModel
from rtseg.train.metrics import ConfusionMatrix
from results_json import write_json  # benchmarks/results_json.py, beside this script

CAMVID = REPO_ROOT.parent / "shared" / "data" / "camvid"
Infer = Callable[[np.ndarray], np.ndarray]  # uint8 (1, h, w, 3) -> uint8 (1, h, w)


class Tail8(nn.Module):
    """Fast-SCNN with the cheap tail: argmax on the 1/8-resolution logits, then nearest
    upsampling of the uint8 ids (moves 1 byte a pixel instead of C floats)."""

    def __init__(self, deploy: DeployModel):
        super().__init__()
        self.deploy = deploy

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        d, net = self.deploy, self.deploy.net
        x = F.conv2d(images.permute(0, 3, 1, 2).to(d.norm_weight.dtype), d.norm_weight, d.norm_bias)
        high = net.downsample(x)
        logits = net.classifier(net.fusion(high, net.global_features(high)))  # (N, C, H/8, W/8)
        ids = logits.argmax(dim=1, keepdim=True).to(torch.uint8)
        return F.interpolate(ids, size=images.shape[1:3], mode="nearest")[:, 0]


def export_tail8(deploy: DeployModel, meta: ModelMeta, size: tuple[int, int], path: Path) -> Path:
    import onnx

    from rtseg.formats.onnx_meta import META_KEY

    example = torch.zeros(1, *size, 3, dtype=torch.uint8)
    torch.onnx.export(Tail8(deploy).eval(), (example,), str(path), input_names=["images"], output_names=["ids"],
                      opset_version=17, dynamo=False)
    graph = onnx.load(str(path))
    graph.metadata_props.add(key=META_KEY, value=meta.to_json())
    onnx.save(graph, str(path))
    return path


def torch_path(deploy: nn.Module, *, channels_last: bool = False, bf16: bool = False) -> Infer:
    if channels_last:
        deploy = deploy.to(memory_format=torch.channels_last)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return deploy(torch.from_numpy(batch)).numpy()
    return run


def build_paths(deploy: DeployModel, meta: ModelMeta, size: tuple[int, int], work: Path, names: set[str],
                calib_frames: int) -> dict[str, Infer]:
    from rtseg.engines.openvino_engine import OpenVINOEngine
    from rtseg.engines.ort_engine import OrtEngine
    from rtseg.export.onnx import export_onnx

    h, w = size
    paths: dict[str, Infer] = {"pytorch_fp32": torch_path(deploy)}
    want = lambda name: name in names or "all" in names  # noqa: E731
    if want("pytorch_channels_last"):
        import copy
        paths["pytorch_channels_last"] = torch_path(copy.deepcopy(deploy), channels_last=True)
    if want("pytorch_bf16_autocast"):
        paths["pytorch_bf16_autocast"] = torch_path(deploy, bf16=True)
    fp32 = export_onnx(deploy.net, meta, work / f"fp32_{h}x{w}.onnx", size=size)
    onnx_files = {"": fp32}
    if want("tail8"):
        onnx_files["_tail8"] = export_tail8(deploy, meta, size, work / f"tail8_{h}x{w}.onnx")
    if want("int8"):
        if (CAMVID / "train").is_dir():
            from int8_quantize import quantize_onnx  # beside this script: int8 did not earn a place in rtseg
            onnx_files["_int8"] = quantize_onnx(fp32, work / f"int8_{h}x{w}.onnx", CAMVID / "train",
                                                frames=calib_frames)
        else:
            print("int8 skipped: no CamVid train frames for calibration", file=sys.stderr)
    for suffix, file in onnx_files.items():
        if suffix == "_int8":
            variants = [("onnxruntime_int8", "ort", None), ("openvino_int8", "ov", "f32")]
        else:
            variants = [(f"onnxruntime_fp32{suffix}", "ort", None), (f"openvino_fp32{suffix}", "ov", "f32"),
                        (f"openvino_bf16{suffix}", "ov", "bf16")]
        for name, runtime, precision in variants:
            if runtime == "ort":
                paths[name] = OrtEngine(file, size=size).infer
            else:
                paths[name] = OpenVINOEngine(file, size=size, precision=precision).infer
    return paths


def camvid_val(limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(BGR frame, label ids with 11 = void) pairs, ``limit`` of them spread over val (0 = all)."""
    if not (CAMVID / "val").is_dir():
        return []
    files = sorted((CAMVID / "val").glob("*.png"))
    if limit:
        files = files[:: max(len(files) // limit, 1)][:limit]
    return [(cv2.imread(str(f)), cv2.imread(str(CAMVID / "valannot" / f.name), cv2.IMREAD_UNCHANGED)) for f in files]


def measure(paths: dict[str, Infer], frame: np.ndarray, val: list, size: tuple[int, int], runs: int,
            score_miou: bool, num_classes: int) -> dict[str, dict]:
    h, w = size
    batch = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)[None]
    times: dict[str, list[float]] = {name: [] for name in paths}
    for fn in paths.values():
        fn(batch)  # warm-up: first-call allocations, OpenVINO's lazy kernel choice
    for _ in range(runs):
        for name, fn in paths.items():  # the paths take turns each round
            t0 = time.perf_counter()
            fn(batch)
            times[name].append((time.perf_counter() - t0) * 1e3)
    ref = paths["pytorch_fp32"](batch)
    val_in = [cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)[None] for img, _ in val]
    val_ref = [paths["pytorch_fp32"](b) for b in val_in]
    base = float(np.median(times["pytorch_fp32"]))
    results = {}
    for name, fn in paths.items():
        med = float(np.median(times[name]))
        row = {"median_ms": round(med, 1), "p95_ms": round(float(np.percentile(times[name], 95)), 1),
               "speedup": round(base / med, 2), "agree_street": round(float((fn(batch) == ref).mean()), 5)}
        if val:
            cm = ConfusionMatrix(num_classes)
            agree = []
            for (img, label), b, r in zip(val, val_in, val_ref):
                ids = fn(b)
                agree.append(float((ids == r).mean()))
                if score_miou:
                    cm.update(cv2.resize(ids[0], (label.shape[1], label.shape[0]), interpolation=cv2.INTER_NEAREST),
                              label)
            row["agree_val"] = round(float(np.mean(agree)), 5)
            row["agree_val_min"] = round(float(np.min(agree)), 5)
            if score_miou:
                row["val_miou"] = round(cm.compute()["miou"], 4)
        results[name] = row
    return results


def table(size: str, results: dict[str, dict]) -> str:
    cols = ["median_ms", "p95_ms", "speedup", "agree_street", "agree_val", "agree_val_min", "val_miou"]
    lines = [f"== {size} ==", f"{'path':<26}" + "".join(f"{c:>14}" for c in cols)]
    for name, row in results.items():
        lines.append(f"{name:<26}" + "".join(f"{row.get(c, '-'):>14}" for c in cols))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None,
                    help="rtseg checkpoint (default: the bundled CamVid weights; none: an untrained net, seed 0)")
    ap.add_argument("--sizes", default="1024x2048,512x1024", help="comma-separated HxW inference sizes")
    ap.add_argument("--runs", type=int, default=7, help="timed calls per path and size, after one warm-up")
    ap.add_argument("--val-frames", type=int, default=0, help="CamVid val frames for agreement/mIoU (0 = all 101)")
    ap.add_argument("--calib-frames", type=int, default=16, help="CamVid train frames to calibrate int8 on")
    ap.add_argument("--paths", default="all", help="extra paths: all, or a comma list of pytorch_channels_last, "
                    "pytorch_bf16_autocast, int8, tail8 (the ONNX fp32/bf16 paths always run)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="PyTorch intra-op threads")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.weights:
        net, meta = build_from_checkpoint(args.weights)
    else:
        torch.manual_seed(0)
        net, meta = create_model("fastscnn", num_classes=11).eval(), ModelMeta.for_dataset("camvid")
    deploy = DeployModel(net, meta).eval()
    frame = cv2.imread(str(BENCH_FRAME))
    val = camvid_val(args.val_frames)
    score_miou = bool(args.weights) and meta.dataset == "camvid" and bool(val)
    out = {"weights": str(args.weights) if args.weights else "untrained (seed 0)", "frame": BENCH_FRAME.name,
           "val_frames": len(val), "runs": args.runs, "torch_threads": args.threads, "cpu": platform.processor(),
           "cores": len(os.sched_getaffinity(0)), "versions": versions(), "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="rtseg_cpu_") as tmp:
        for text in args.sizes.split(","):
            size = parse_size(text)
            paths = build_paths(deploy, meta, size, Path(tmp), set(args.paths.split(",")), args.calib_frames)
            results = measure(paths, frame, val, size, args.runs, score_miou, meta.num_classes)
            out["sizes"][text] = results
            print(table(text, results), flush=True)
    if args.json:
        write_json(args.json, out)


def versions() -> dict[str, str]:
    import onnxruntime
    v = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        import openvino
        v["openvino"] = openvino.__version__
    except ImportError:
        pass
    return v


if __name__ == "__main__":
    main()
