"""Where a Fast-SCNN training step spends its time: the step (augment, forward, backward, SGD)
timed under a few settings, and the top kernels of one setting from torch.profiler.

    python benchmarks/train_step_profile.py --device cuda --json OUT.json

Random uint8 frames stand in for CamVid (the step's cost does not depend on the pixels).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from rtseg.nets import create_model
from rtseg.train.batch_augment import augment_batch, draw_params
from rtseg.train.losses import build_loss
from rtseg.train.optim import build_optimizer
from rtseg.train.transforms import AugmentConfig


def setup(device: str, batch: int, crop: tuple[int, int], channels_last: bool):
    model = create_model("fastscnn", num_classes=11, aux=True).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    crit = build_loss("ce", ignore_index=255, class_weights=torch.ones(11, device=device), aux_weight=0.4).to(device)
    opt = build_optimizer(model, "sgd", lr=0.01, weight_decay=4e-5)
    frames = torch.randint(0, 256, (64, 3, 360, 480), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 11, (64, 360, 480), dtype=torch.uint8, device=device)
    return model, crit, opt, frames, labels, AugmentConfig(scale=(0.5, 2.0), crop=crop, jitter=0.3)


def time_steps(device: str, batch: int, crop, *, amp: str, channels_last: bool, steps: int, augment: bool = True,
               profile: bool = False) -> dict:
    model, crit, opt, frames, labels, cfg = setup(device, batch, crop, channels_last)
    g = torch.Generator().manual_seed(0)
    ctx = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    x_fixed, y_fixed = augment_batch(frames[:batch], labels[:batch], draw_params(batch, (360, 480), cfg, g), cfg)

    def step():
        if augment:
            idx = torch.randint(0, 64, (batch,), device=device)
            x, y = augment_batch(frames[idx], labels[idx], draw_params(batch, (360, 480), cfg, g), cfg)
        else:
            x, y = x_fixed, y_fixed
        if not channels_last:
            x = x.contiguous()
        with ctx:
            loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(5):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    ms = (time.perf_counter() - t0) / steps * 1e3
    out = {"amp": amp, "channels_last": channels_last, "augment": augment, "batch": batch, "step_ms": round(ms, 2),
           "images_per_s": round(batch / ms * 1e3, 1)}
    if profile:
        from torch.profiler import ProfilerActivity, profile as prof

        with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            for _ in range(3):
                step()
            sync()
        rows = sorted(p.key_averages(), key=lambda e: e.device_time_total, reverse=True)[:25]
        out["top_kernels"] = [{"name": e.key[:120], "device_ms_per_step": round(e.device_time_total / 3e3, 3),
                               "calls_per_step": e.count // 3} for e in rows]
        out["kernels_per_step"] = sum(e.count for e in p.key_averages() if e.device_time_total > 0) // 3
    print(json.dumps({k: v for k, v in out.items() if k != "top_kernels"}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    crop = (360, 480)
    results = [time_steps(args.device, args.batch, crop, amp="bf16", channels_last=True, steps=args.steps, profile=True)]
    for amp, cl, aug in (("bf16", True, False), ("bf16", False, True), ("off", True, True), ("off", False, True)):
        results.append(time_steps(args.device, args.batch, crop, amp=amp, channels_last=cl, steps=args.steps, augment=aug))
    for row in results[0]["top_kernels"]:
        print(f"{row['device_ms_per_step']:8.3f} ms  x{row['calls_per_step']:<4d} {row['name']}")
    if args.json:
        with open(args.json, "w") as fh:
            from rtseg.machine import describe

            json.dump({"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu", "torch": torch.__version__, "machine": describe(), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
