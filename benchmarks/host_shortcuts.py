"""Where a frame's time goes outside the network, and what the cheap versions cost in quality.

Part 1 (always): host work per 1024x2048 frame on the bundled street frame, the straightforward
way against rtseg's: normalisation in numpy vs folded into the network (nothing on the host but
a uint8 resize); argmax + upsampling of logits vs nearest upsampling of uint8 ids; ``palette[ids]``
vs ``cv2.LUT`` at the frame's size vs ``cv2.LUT`` at the inference size; blending. Median of ``--runs``.

Part 2 (when ../shared/data/camvid and a checkpoint are present): the mIoU cost on CamVid val of
upsampling class ids (nearest, what rtseg does) instead of logits (bilinear, then argmax) when
the network runs below the frame size.

    python benchmarks/host_shortcuts.py --weights runs/x/best.pt --json benchmarks/results/host_shortcuts.json
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from rtseg.bundled import BENCH_FRAME, DEFAULT_WEIGHTS, REPO_ROOT
from rtseg.meta import ModelMeta
from rtseg.viz import colorize, compose, compose_i420, overlay, palette_lut, resize_nearest, yuv_luts
from results_json import write_json  # benchmarks/results_json.py, beside this script


def _median_ms(fn, runs: int) -> float:
    fn()  # warm caches and allocators
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def host_costs(runs: int, size: tuple[int, int] = (512, 1024), classes: int = 11) -> dict[str, float]:
    """Milliseconds per 1024x2048 frame of each piece of host work (inference at ``size``)."""
    frame = cv2.imread(str(BENCH_FRAME))
    H, W = frame.shape[:2]
    h, w = size
    meta = ModelMeta.for_dataset("camvid")
    mean, std = np.array(meta.mean, np.float32), np.array(meta.std, np.float32)
    rng = np.random.default_rng(0)
    logits_small = torch.from_numpy(rng.standard_normal((1, classes, h, w), np.float32))
    ids_small = logits_small.argmax(1)[0].numpy().astype(np.uint8)
    ids_full = resize_nearest(ids_small, (H, W))
    palette = np.array(meta.palette, np.uint8)
    lut = palette_lut(meta.palette)
    colours = colorize(ids_full, lut)
    luts = yuv_luts(meta.palette)

    def normalise_numpy():  # float CHW at the frame's size, as the naive loop does
        x = (cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0 - mean) / std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    costs = {
        "normalise: numpy float CHW at 1024x2048": _median_ms(normalise_numpy, runs),
        f"transform: uint8 resize to {h}x{w} (rtseg; normalisation is in-graph)":
            _median_ms(lambda: cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR), runs),
        f"logits {h}x{w} -> bilinear to 1024x2048 -> argmax (torch)":
            _median_ms(lambda: F.interpolate(logits_small, size=(H, W), mode="bilinear", align_corners=False).argmax(1),
                       max(3, runs // 3)),
        f"ids {h}x{w} -> nearest to 1024x2048 (rtseg)":
            _median_ms(lambda: resize_nearest(ids_small, (H, W)), runs),
        "colour: palette[ids] (numpy)": _median_ms(lambda: palette[ids_full], runs),
        "colour: cv2.LUT at 1024x2048": _median_ms(lambda: colorize(ids_full, lut), runs),
        f"colour: cv2.LUT at {h}x{w}, colours enlarged nearest (rtseg)":
            _median_ms(lambda: resize_nearest(colorize(ids_small, lut), (H, W)), runs),
        "blend: cv2.addWeighted": _median_ms(lambda: overlay(frame, colours, 0.5), runs),
        # what the H.264 writer needs is I420: drawing in BGR then converting, against drawing in I420
        f"overlay for the encoder: BGR compose from {h}x{w} ids + BGR->I420":
            _median_ms(lambda: cv2.cvtColor(compose(frame, ids_small, lut, "overlay", 0.5), cv2.COLOR_BGR2YUV_I420),
                       runs),
        f"overlay for the encoder: I420 compose from {h}x{w} ids (rtseg)":
            _median_ms(lambda: compose_i420(frame, ids_small, luts, "overlay", 0.5), runs),
    }
    return costs


def _camvid_val(root: Path):
    for image in sorted((root / "val").glob("*.png")):
        label = root / "valannot" / image.name
        yield cv2.imread(str(image), cv2.IMREAD_COLOR), cv2.imread(str(label), cv2.IMREAD_UNCHANGED)


def miou_cost(weights: Path, root: Path, sizes: list[tuple[int, int]], limit: int) -> list[dict]:
    """For each inference size: mIoU with logits upsampled (bilinear) then argmax, vs argmax then
    ids upsampled (nearest), on CamVid val at its 360x480 frames."""
    from rtseg.formats.checkpoint import build_from_checkpoint
    from rtseg.nets.deploy import DeployModel
    from rtseg.train.metrics import ConfusionMatrix

    net, meta = build_from_checkpoint(weights)
    model = DeployModel(net, meta, output="logits").eval()
    rows = []
    for h, w in sizes:
        cms = {"logits_bilinear": ConfusionMatrix(meta.num_classes, 11), "ids_nearest": ConfusionMatrix(meta.num_classes, 11)}
        for i, (frame, label) in enumerate(_camvid_val(root)):
            if limit and i >= limit:
                break
            H, W = frame.shape[:2]
            small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
            with torch.inference_mode():
                logits = model(torch.from_numpy(small[None]))  # (1, C, h, w)
                up = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False).argmax(1)[0].numpy()
                ids = logits.argmax(1)[0].numpy().astype(np.uint8)
            near = resize_nearest(ids, (H, W))
            cms["logits_bilinear"].update(up, label)
            cms["ids_nearest"].update(near, label)
        a, b = (cms[k].compute(meta.class_names)["miou"] for k in ("logits_bilinear", "ids_nearest"))
        rows.append({"input_size": [h, w], "miou_logits_bilinear": round(a, 4), "miou_ids_nearest": round(b, 4),
                     "miou_cost": round(a - b, 4)})
        print(f"{h}x{w}: mIoU logits->bilinear->argmax {a:.4f}, argmax->ids nearest {b:.4f}, cost {a - b:+.4f}",
              flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="a CamVid checkpoint for part 2")
    ap.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "camvid")
    ap.add_argument("--sizes", default="256x352,192x256,128x160", help="inference sizes below 360x480 for part 2")
    ap.add_argument("--limit", type=int, default=0, help="val frames to use (0 = all 101)")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    costs = host_costs(args.runs)
    print(f"{'host work per 1024x2048 frame (inference at 512x1024)':70s} {'median ms':>9s}")
    for name, ms in costs.items():
        print(f"{name:70s} {ms:9.1f}")
    result: dict = {"host_ms_1024x2048": {k: round(v, 2) for k, v in costs.items()}}
    if args.weights.is_file() and (args.data / "val").is_dir():
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        result["camvid_val_upsampling"] = miou_cost(args.weights, args.data, sizes, args.limit)
        result["weights"] = str(args.weights)
    else:
        print(f"part 2 skipped: needs {args.weights} and {args.data}/val")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
