"""Training speed of ``rtseg train`` in images/s: forward, backward and step, data included.

    python benchmarks/train_speed.py --json benchmarks/results/train_speed_cpu.json

Each setting trains through ``rtseg.train.loop.train`` itself (the real loop, data path and
all) for ``--epochs`` short epochs of ``--frames`` CamVid frames (synthetic frames when
../shared/data is absent) and reports the median of the epochs after the first (warm-up).
Settings run interleaved, ``--rounds`` times, so a burst of outside load hits all of them.
"before" is the path as it was: DataLoader workers augmenting with OpenCV, and PyTorch's
bilinear backward for the logits' enlargement.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rtseg.nets.layers as layers  # noqa: E402
from rtseg.train.loop import TrainCallbacks, TrainConfig, train  # noqa: E402
from results_json import write_json  # noqa: E402  (benchmarks/, beside this script)

SETTINGS = {
    # name: (TrainConfig overrides, use the matrix-product resize)
    "before: workers + OpenCV, F.interpolate backward": ({"data_on_device": "off", "workers": 2}, False),
    "workers + OpenCV, matmul resize": ({"data_on_device": "off", "workers": 2}, True),
    "data in memory, batched augment, matmul resize": ({"data_on_device": "on", "workers": 0}, True),
    "data in memory, matmul resize, bf16": ({"data_on_device": "on", "workers": 0, "amp": "bf16"}, True),
}


@contextlib.contextmanager
def interpolate_backward(on: bool):
    """Use PyTorch's F.interpolate in training too (the old path) when ``on``."""
    saved = layers.resize_matmul
    if on:
        layers.resize_matmul = lambda x, size: F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    try:
        yield
    finally:
        layers.resize_matmul = saved


def synthetic_camvid(root: Path, n: int) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir(parents=True)
        for i in range(n if split == "train" else 2):
            cv2.imwrite(str(root / split / f"{i}.png"), rng.integers(0, 256, (360, 480, 3), dtype=np.uint8))
            cv2.imwrite(str(root / f"{split}annot" / f"{i}.png"), rng.integers(0, 12, (360, 480), dtype=np.uint8))
    return root


def measure(data: Path, out: Path, overrides: dict, *, frames: int, epochs: int, batch: int, crop: tuple[int, int],
            device: str) -> list[float]:
    cfg = TrainConfig(dataset="camvid", data_root=str(data), out_dir=str(out), epochs=epochs, batch_size=batch, crop=crop,
                      val_every=10_000, tensorboard=False, limit=frames, device=device, **overrides)
    result = train(cfg, TrainCallbacks())
    # Every epoch but the first (workers starting, first allocations); frames trained / seconds.
    return [r["steps"] * batch / r["seconds"] for r in result["history"][1:] if r["seconds"] > 0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "camvid")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=48, help="frames per epoch (drop_last batches)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per measurement; the first is warm-up")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", default="360x480")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    crop = tuple(int(v) for v in args.crop.split("x"))
    with tempfile.TemporaryDirectory(prefix="rtseg-train-speed-") as tmp:
        data = args.data if (args.data / "train").is_dir() else synthetic_camvid(Path(tmp) / "camvid", args.frames)
        runs: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for r in range(args.rounds):
            order = list(SETTINGS)[r % len(SETTINGS):] + list(SETTINGS)[:r % len(SETTINGS)]  # rotate
            for name in order:
                overrides, matmul = SETTINGS[name]
                with interpolate_backward(not matmul):
                    speeds = measure(data, Path(tmp) / "run", overrides, frames=args.frames, epochs=args.epochs,
                                     batch=args.batch, crop=crop, device=args.device)
                runs[name].extend(speeds)
                print(f"round {r + 1}: {name}: {', '.join(f'{s:.2f}' for s in speeds)} images/s", flush=True)
    base = statistics.median(runs[next(iter(SETTINGS))])
    rows = [{"setting": name, "images_per_s": round(statistics.median(v), 2), "vs_before": round(statistics.median(v) / base, 2),
             "each": [round(s, 2) for s in v]} for name, v in runs.items()]
    print(f"\ntraining images/s, {args.device}, batch {args.batch}, crop {args.crop}, {torch.get_num_threads()} threads "
          f"(medians of {args.rounds} rounds x {args.epochs - 1} epochs of {args.frames} frames)")
    for row in rows:
        print(f"  {row['images_per_s']:7.2f}  {row['vs_before']:4.2f}x  {row['setting']}")
    if args.json:
        write_json(args.json, {"device": args.device, "torch": torch.__version__, "batch": args.batch,
                                         "crop": list(crop), "threads": torch.get_num_threads(), "frames": args.frames,
                                         "rounds": args.rounds, "data": "camvid" if data == args.data else "synthetic",
                                         "date": time.strftime("%Y-%m-%d"), "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
