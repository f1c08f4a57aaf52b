"""Optimisers, learning-rate schedules and mixed precision for the training loop.

The schedule is a pure function of the global step, so ``--resume`` needs no scheduler state.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from rtseg.errors import RtsegError

__all__ = ["param_groups", "build_optimizer", "lr_at", "amp_mode", "autocast_and_scaler", "AMP_MODES"]

AMP_MODES = ("auto", "off", "bf16", "fp16")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on full convolutions and linear layers only: none on depthwise weights
    (as in the paper), BatchNorm or biases."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
            if name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear)) and not depthwise:
                decay.append(p)
            else:
                no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, *, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """``sgd`` (momentum; the paper's) or ``adamw``; weight decay as in :func:`param_groups`."""
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise RtsegError(f"--optimizer {name!r} is not allowed; use sgd, adamw")


def lr_at(step: int, total: int, *, optimizer: str, peak: float, warmup_steps: int = 0,
          poly_power: float = 0.9) -> float:
    """The learning rate at global step ``step`` of ``total``.

    sgd: linear warm-up from peak/10 over ``warmup_steps``, then poly decay
    peak * (1 - step/total)^power (the paper's). adamw: OneCycle - cosine up from peak/25 over
    the first 30% of the steps, cosine down to peak/1e4 (it has its own warm-up)."""
    if optimizer == "sgd":
        if step < warmup_steps:
            return peak * (0.1 + 0.9 * step / warmup_steps)
        return peak * (1 - min(step, total - 1) / total) ** poly_power
    up = max(1, int(0.3 * total))
    if step < up:
        t = step / up
        return peak / 25 + (peak - peak / 25) * (1 - math.cos(math.pi * t)) / 2
    t = min(1.0, (step - up) / max(1, total - up))
    return peak / 1e4 + (peak - peak / 1e4) * (1 + math.cos(math.pi * t)) / 2


def amp_mode(amp: str, device: str) -> str:
    """What ``--amp`` means on ``device``: "off", "bf16" or "fp16". auto = bf16 on CUDA (fp16 on
    GPUs without bf16); off on the CPU, where bf16 changes the numerics for a small gain
    (benchmarks/train_speed.py), so it is opt-in (``--amp bf16``)."""
    if amp not in AMP_MODES:
        raise RtsegError(f"--amp {amp!r} is not allowed; use {', '.join(AMP_MODES)}")
    if amp != "auto":
        return amp
    if not device.startswith("cuda"):
        return "off"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"  # Ampere on: fp16's range without a GradScaler


def autocast_and_scaler(amp: str, device: str):
    """(context manager for the forward pass, GradScaler or None) for :func:`amp_mode`'s choice.
    bf16 needs no loss scaling: it has fp32's exponent range."""
    mode = amp_mode(amp, device)
    cuda = device.startswith("cuda")
    if mode == "off":
        return contextlib.nullcontext(), None
    if mode == "fp16" and not cuda:
        raise RtsegError("--amp fp16 needs CUDA; on the CPU use --amp bf16 or --amp off")
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast(device_type="cuda" if cuda else "cpu", dtype=dtype), scaler
