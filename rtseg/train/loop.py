"""The training loop, readable top to bottom: data, model, loss, optimiser, schedule,
then epochs of train steps with validation, checkpoints and logging.

Runs alone or under ``torchrun`` (DistributedDataParallel). Progress goes to a
:class:`TrainCallbacks` object so that the CLI can draw it; this module logs through
``logging`` only.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from rtseg.checkpoint import load_checkpoint, save_checkpoint
from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta
from rtseg.nets import create_model
from rtseg.train.data import IGNORE, SegDataset, build_dataset
from rtseg.train.dist import DistInfo, all_reduce_sum, cleanup, init_distributed
from rtseg.train.losses import LOSSES, build_loss, enet_weights
from rtseg.train.metrics import ConfusionMatrix
from rtseg.train.transforms import AugmentConfig, augment

__all__ = ["TrainConfig", "TrainCallbacks", "train", "evaluate_model", "resolve_device"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "camvid"  # camvid | cityscapes | folder
    data_root: str = "../shared/data/camvid"
    train_split: str = "train"
    val_split: str = "val"
    out_dir: str = "runs/train"  # best.pt, last.pt, tensorboard/ go here
    model: str = "fastscnn"
    epochs: int = 100
    batch_size: int = 8
    crop: tuple[int, int] = (360, 480)  # (h, w) training crop
    scale: tuple[float, float] = (0.5, 2.0)  # random rescale range before cropping
    jitter: float = 0.3  # colour jitter strength, 0 = off
    optimizer: str = "sgd"  # sgd (momentum, poly decay: the paper's) | adamw (OneCycle)
    lr: float | None = None  # peak learning rate; None = 0.045 for sgd, 2e-3 for adamw
    weight_decay: float | None = None  # None = 4e-5 for sgd (paper), 1e-4 for adamw; never on depthwise/BN/bias
    momentum: float = 0.9
    poly_power: float = 0.9
    warmup_epochs: float = 1.0  # linear warm-up for sgd (adamw's OneCycle has its own)
    loss: str = "ce"  # one of LOSSES
    class_weights: str = "none"  # none | enet  (w = 1/ln(1.02 + p))
    aux_weight: float = 0.4  # auxiliary-head loss weight (paper: 0.4); 0 = no aux heads
    clip_grad: float = 0.0  # max gradient norm, 0 = off
    amp: str = "auto"  # auto (fp16 on CUDA, off on CPU) | off | bf16 | fp16
    val_every: int = 1  # validate every N epochs
    patience: int = 0  # stop after N validations without a better mIoU, 0 = never
    seed: int = 0
    workers: int = 2  # DataLoader worker processes per rank
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: str | None = None  # a last.pt to continue from
    tensorboard: bool = True  # scalars and a few prediction images under out_dir/tensorboard
    limit: int = 0  # use only the first N train and val images (quick checks), 0 = all
    init: str | None = None  # start from these weights (fine-tuning), the classifier must match

    def validate(self) -> "TrainConfig":
        checks = [
            (self.optimizer in ("sgd", "adamw"), "optimizer", self.optimizer, "sgd, adamw"),
            (self.loss in LOSSES, "loss", self.loss, ", ".join(LOSSES)),
            (self.class_weights in ("none", "enet"), "class-weights", self.class_weights, "none, enet"),
            (self.amp in ("auto", "off", "bf16", "fp16"), "amp", self.amp, "auto, off, bf16, fp16"),
            (self.epochs >= 1, "epochs", self.epochs, ">= 1"),
            (self.batch_size >= 1, "batch-size", self.batch_size, ">= 1"),
            (0 < self.scale[0] <= self.scale[1], "scale", self.scale, "0 < min <= max"),
            (self.val_every >= 1, "val-every", self.val_every, ">= 1"),
            (self.lr is None or self.lr > 0, "lr", self.lr, "> 0"),
        ]
        for ok, flag, value, allowed in checks:
            if not ok:
                raise RtsegError(f"--{flag} {value!r} is not allowed; use {allowed}")
        return self

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else (0.045 if self.optimizer == "sgd" else 2e-3)

    @property
    def decay(self) -> float:
        return self.weight_decay if self.weight_decay is not None else (4e-5 if self.optimizer == "sgd" else 1e-4)


class TrainCallbacks:
    """Hooks the CLI implements to show progress; the defaults log."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...

    def on_step(self, epoch: int, step: int, loss: float, lr: float) -> None: ...

    def on_epoch_end(self, epoch: int, train_loss: float, seconds: float) -> None:
        log.info("epoch %d: loss %.4f, %.1f s", epoch, train_loss, seconds)

    def on_validate(self, epoch: int, metrics: dict, best: bool) -> None:
        log.info("epoch %d: val mIoU %.4f%s", epoch, metrics["miou"], " (best)" if best else "")

    def on_message(self, text: str) -> None:
        log.info(text)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RtsegError(f"--device {device}: this PyTorch build sees no CUDA GPU; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise RtsegError(f"--device {device!r} is not allowed; use auto, cpu, cuda or cuda:N")
    return device


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
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


def lr_at(step: int, total: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """The learning rate at a global step, as a pure function (so --resume needs no scheduler state).
    sgd: linear warm-up then poly decay (1 - t)^power. adamw: OneCycle (cosine up over the
    first 30% from peak/25, cosine down to peak/1e4)."""
    peak = cfg.peak_lr
    if cfg.optimizer == "sgd":
        warm = int(cfg.warmup_epochs * steps_per_epoch)
        if step < warm:
            return peak * (0.1 + 0.9 * step / warm)
        return peak * (1 - min(step, total - 1) / total) ** cfg.poly_power
    up = max(1, int(0.3 * total))
    if step < up:
        t = step / up
        return peak / 25 + (peak - peak / 25) * (1 - math.cos(math.pi * t)) / 2
    t = min(1.0, (step - up) / max(1, total - up))
    return peak / 1e4 + (peak - peak / 1e4) * (1 + math.cos(math.pi * t)) / 2


def _class_pixel_counts(ds: SegDataset) -> np.ndarray:
    counts = np.zeros(ds.info.num_classes, np.int64)
    for i in range(len(ds)):
        _, label = ds.read(i)
        counts += np.bincount(label[label != IGNORE].ravel(), minlength=ds.info.num_classes)[: ds.info.num_classes]
    return counts


def _autocast(cfg: TrainConfig, device: str):
    mode = cfg.amp
    if mode == "auto":
        mode = "fp16" if device.startswith("cuda") else "off"
    if mode == "off":
        return torch.autocast(device_type="cpu", enabled=False), None
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    if dev_type == "cpu" and dtype == torch.float16:
        raise RtsegError("--amp fp16 needs CUDA; on the CPU use --amp bf16 or --amp off")
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast(device_type=dev_type, dtype=dtype), scaler


@torch.inference_mode()
def evaluate_model(model: nn.Module, loader: DataLoader, num_classes: int, device: str,
                   info: DistInfo = DistInfo()) -> ConfusionMatrix:
    """Confusion matrix of ``model`` over ``loader`` (summed over ranks under DDP)."""
    model.eval()
    cm = ConfusionMatrix(num_classes, IGNORE)
    for images, labels in loader:
        images = images.to(device, memory_format=torch.channels_last)
        pred = model(images).argmax(1).cpu()
        cm.update(pred, labels)
    all_reduce_sum(cm.mat, info)
    return cm


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, callbacks: TrainCallbacks | None = None) -> dict[str, Any]:
    """Train, validate and checkpoint; returns ``{"best_miou", "best_epoch", "history", "out_dir"}``."""
    cfg.validate()
    cb = callbacks or TrainCallbacks()
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    if info.enabled and device.startswith("cuda"):
        device = f"cuda:{info.local_rank}"
    _seed_everything(cfg.seed + info.rank)
    try:
        return _train(cfg, cb, device, info)
    finally:
        cleanup(info)


def _train(cfg: TrainConfig, cb: TrainCallbacks, device: str, info: DistInfo) -> dict[str, Any]:
    out = Path(cfg.out_dir)
    # --- data
    train_ds = build_dataset(cfg.dataset, cfg.data_root, cfg.train_split)
    val_ds = build_dataset(cfg.dataset, cfg.data_root, cfg.val_split)
    aug = AugmentConfig(scale=cfg.scale, crop=cfg.crop, jitter=cfg.jitter, ignore_index=IGNORE)
    train_ds.transform = lambda img, label: augment(img, label, aug)
    num_classes = train_ds.info.num_classes
    weights = None
    if cfg.class_weights == "enet":
        weights = enet_weights(_class_pixel_counts(train_ds)).to(device)
        cb.on_message("ENet class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(train_ds.info.class_names, weights.tolist())))
    train_set = Subset(train_ds, range(min(cfg.limit, len(train_ds)))) if cfg.limit else train_ds
    val_set = Subset(val_ds, range(min(cfg.limit, len(val_ds)))) if cfg.limit else val_ds
    train_sampler = DistributedSampler(train_set, info.world_size, info.rank, shuffle=True, seed=cfg.seed) if info.enabled else None
    val_sampler = DistributedSampler(val_set, info.world_size, info.rank, shuffle=False) if info.enabled else None
    g = torch.Generator().manual_seed(cfg.seed)
    # drop_last keeps BatchNorm away from a batch of one at the end of an epoch.
    train_loader = DataLoader(train_set, cfg.batch_size, shuffle=train_sampler is None, sampler=train_sampler,
                              num_workers=cfg.workers, drop_last=len(train_set) > cfg.batch_size,
                              persistent_workers=cfg.workers > 0, generator=g)
    val_loader = DataLoader(val_set, 4, sampler=val_sampler, num_workers=cfg.workers)

    # --- model, loss, optimiser
    meta = ModelMeta(model=cfg.model, num_classes=num_classes, class_names=train_ds.info.class_names,
                     palette=train_ds.info.palette, input_size=tuple(val_ds.read(0)[1].shape), dataset=train_ds.info.name,
                     extra={"train_config": _jsonable(asdict(cfg))})
    model = create_model(cfg.model, num_classes=num_classes, aux=cfg.aux_weight > 0)
    if cfg.init:
        init = load_checkpoint(cfg.init)["state_dict"]
        missing = model.load_state_dict(init, strict=False)
        cb.on_message(f"initialised from {cfg.init} (missing: {len(missing.missing_keys)}, unexpected: {len(missing.unexpected_keys)})")
    model = model.to(device, memory_format=torch.channels_last)
    if info.enabled and device.startswith("cuda"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # PyTorch's SyncBatchNorm is GPU-only
    criterion = build_loss(cfg.loss, ignore_index=IGNORE, class_weights=weights, aux_weight=cfg.aux_weight).to(device)
    groups = _param_groups(model, cfg.decay)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.peak_lr, momentum=cfg.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.peak_lr)
    autocast, scaler = _autocast(cfg, device)

    start_epoch, best_miou, best_epoch, history = 1, -1.0, 0, []
    if cfg.resume:
        state = load_checkpoint(cfg.resume, map_location=device)
        model.load_state_dict(state["state_dict"])
        t = state["train"]
        if "optimizer" not in t:
            raise RtsegError(f"{cfg.resume} holds no training state (was it a best.pt?); resume from last.pt")
        optimizer.load_state_dict(t["optimizer"])
        start_epoch, best_miou, best_epoch = int(t["epoch"]) + 1, float(t["best_miou"]), int(t["best_epoch"])
        history = list(t.get("history", []))
        cb.on_message(f"resumed from {cfg.resume} at epoch {start_epoch}")
    net = nn.parallel.DistributedDataParallel(model) if info.enabled else model

    writer = _tensorboard(out / "tensorboard", cb) if cfg.tensorboard and info.is_main else None
    steps_per_epoch = len(train_loader)
    total_steps = cfg.epochs * steps_per_epoch
    stale = 0
    for epoch in range(start_epoch, cfg.epochs + 1):
        # --- train one epoch
        net.train()
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        cb.on_epoch_start(epoch, cfg.epochs, steps_per_epoch)
        t0, loss_sum = time.perf_counter(), 0.0
        for step, (images, labels) in enumerate(train_loader):
            gstep = (epoch - 1) * steps_per_epoch + step
            lr = lr_at(gstep, total_steps, cfg, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = images.to(device, memory_format=torch.channels_last, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with autocast:
                loss = criterion(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            value = loss.item()  # syncs the device; cheap next to a training step
            if not math.isfinite(value):
                raise RtsegError(f"loss became {value} at epoch {epoch} step {step}; lower --lr or set --clip-grad")
            loss_sum += value
            cb.on_step(epoch, step, value, lr)
            if writer is not None:
                writer.add_scalar("train/loss", value, gstep)
                writer.add_scalar("train/lr", lr, gstep)
        seconds = time.perf_counter() - t0
        train_loss = loss_sum / max(1, steps_per_epoch)
        cb.on_epoch_end(epoch, train_loss, seconds)
        record = {"epoch": epoch, "train_loss": train_loss, "seconds": round(seconds, 1)}

        # --- validate, checkpoint
        if epoch % cfg.val_every == 0 or epoch == cfg.epochs:
            metrics = evaluate_model(model, val_loader, num_classes, device, info).compute(train_ds.info.class_names)
            record.update(val_miou=metrics["miou"], val_pixel_acc=metrics["pixel_acc"], val_mean_dice=metrics["mean_dice"])
            improved = metrics["miou"] > best_miou
            if improved:
                best_miou, best_epoch, stale = metrics["miou"], epoch, 0
            else:
                stale += 1
            cb.on_validate(epoch, metrics, improved)
            if info.is_main:
                if writer is not None:
                    writer.add_scalar("val/miou", metrics["miou"], epoch)
                    writer.add_scalar("val/pixel_acc", metrics["pixel_acc"], epoch)
                    _log_predictions(writer, model, val_ds, meta, device, epoch)
                if improved:
                    best_meta = replace(meta, extra={**meta.extra, "epoch": epoch, "val": metrics})
                    save_checkpoint(out / "best.pt", model, best_meta, epoch=epoch)
        history.append(record)
        if info.is_main:
            save_checkpoint(out / "last.pt", model, meta, epoch=epoch, optimizer=optimizer.state_dict(),
                            best_miou=best_miou, best_epoch=best_epoch, history=history)
        if cfg.patience and stale >= cfg.patience:
            cb.on_message(f"early stop: no better val mIoU for {cfg.patience} validations (best {best_miou:.4f} at epoch {best_epoch})")
            break
    if writer is not None:
        writer.close()
    return {"best_miou": best_miou, "best_epoch": best_epoch, "history": history, "out_dir": str(out)}


def _jsonable(d: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _tensorboard(logdir: Path, cb: TrainCallbacks):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        cb.on_message("TensorBoard logging is off: install it with pip install 'rtseg[train]' (or pass --no-tensorboard)")
        return None
    return SummaryWriter(str(logdir))


@torch.inference_mode()
def _log_predictions(writer, model: nn.Module, ds: SegDataset, meta: ModelMeta, device: str, epoch: int, n: int = 3) -> None:
    """A few val images next to their predicted colours."""
    from rtseg.viz import colorize
    from rtseg.train.data import to_tensor

    model.eval()
    for i in range(min(n, len(ds))):
        img, _ = ds.read(i)
        pred = model(to_tensor(img)[None].to(device)).argmax(1)[0].to(torch.uint8).cpu().numpy()
        both = np.concatenate([img, colorize(pred, meta.palette)], axis=1)[:, :, ::-1]  # BGR -> RGB
        writer.add_image(f"val/prediction_{i}", both, epoch, dataformats="HWC")
