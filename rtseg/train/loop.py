"""The training loop, readable top to bottom: data, model, loss, optimiser, schedule,
then epochs of train steps with validation, checkpoints and logging.

Runs alone or under ``torchrun`` (DistributedDataParallel; SyncBatchNorm on CUDA only, since
PyTorch's SyncBatchNorm has no CPU kernel). Every epoch reseeds every random source from
(seed, epoch, rank), so ``--resume`` from last.pt continues exactly as the uninterrupted run
would have. Progress goes to a :class:`TrainCallbacks` object so that the CLI can draw it;
this module logs through ``logging`` only.
"""
from __future__ import annotations

import functools
import logging
import math
import multiprocessing as mp
import random
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from rtseg.checkpoint import load_checkpoint, save_checkpoint
from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta
from rtseg.nets import create_model, list_models
from rtseg.nets.registry import model_options
from rtseg.train.calibrate import fold_logit_offset, tune_logit_offset
from rtseg.train.data import IGNORE, SegDataset, build_dataset, to_tensor
from rtseg.train.device_data import DeviceData, evaluate_device
from rtseg.train.dist import DistInfo, all_reduce_sum, cleanup, init_distributed
from rtseg.train.evaluate import evaluate_model
from rtseg.train.losses import LOSSES, build_loss, enet_weights
from rtseg.train.optim import AMP_MODES, amp_mode, autocast_and_scaler, build_optimizer, lr_at
from rtseg.train.transforms import AugmentConfig, augment

__all__ = ["TrainConfig", "TrainCallbacks", "train", "evaluate_model", "resolve_device", "CLASS_WEIGHTS"]

log = logging.getLogger(__name__)

# --class-weights name -> c in w = 1/ln(c + p); ENet's 1.02 weights a 0.3% class 45x, a 30% one 3.8x;
# ESPNet's and CGNet's 1.10 gives 10x and 2.6x.
CLASS_WEIGHTS = {"none": None, "enet": 1.02, "espnet": 1.10}


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "camvid"  # camvid | cityscapes | folder
    data_root: str = "../shared/data/camvid"
    train_split: str = "train"
    val_split: str = "val"
    out_dir: str = "runs/train"  # best.pt, last.pt, tensorboard/ go here
    model: str = "fastscnn"  # a registered network: fastscnn | ddrnet23_slim | bisenetv2 | unet
    width: int = 0  # U-Net's first-stage width (64 = the paper's); 0 = the network's default (32)
    epochs: int = 100
    batch_size: int = 8  # per process under torchrun
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
    class_weights: str = "none"  # none | enet (w = 1/ln(1.02 + p), ENet's) | espnet (w = 1/ln(1.10 + p), milder: ESPNet, CGNet)
    aux_weight: float | None = None  # weight of each auxiliary head's loss; None = the network's paper weights (0.4 Fast-SCNN and DDRNet, 1 BiSeNetV2); 0 = no aux heads
    clip_grad: float = 0.0  # max gradient norm, 0 = off
    amp: str = "auto"  # auto (bf16 on CUDA, fp16 on GPUs without it, off on CPU) | off | bf16 | fp16
    data_on_device: str = "auto"  # auto (on for CUDA) | on | off: decode the train split once, keep it on the device, augment there (train/device_data.py)
    compile: bool = False  # torch.compile the training step's network (on CUDA with CUDA graphs: "reduce-overhead"); the first steps compile, for a minute or more
    sync_every: int = 0  # read the loss back (a device sync) every N steps; 0 = every step on the CPU, every 20 on CUDA
    val_every: int = 1  # validate every N epochs (and always after the last)
    patience: int = 0  # stop after N validations without a better mIoU, 0 = never
    seed: int = 0
    workers: int = 2  # DataLoader worker processes per rank
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: str | None = None  # a last.pt to continue from
    tensorboard: bool = True  # scalars and a few prediction images under out_dir/tensorboard
    limit: int = 0  # use only the first N train and val images (quick checks), 0 = all
    val_size: tuple[int, int] | None = None  # validate at this (h, w), recorded as the model's inference size; None = each image's own
    init: str | None = None  # start from these weights (fine-tuning), the classifier must match
    calibrate: bool = False  # at the end: tune on val the logit offset that undoes the class weights, fold it into best.pt (train/calibrate.py)

    def validate(self) -> "TrainConfig":
        """Raise RtsegError naming the first bad flag, its value and what is allowed."""
        checks = [
            (self.optimizer in ("sgd", "adamw"), "optimizer", self.optimizer, "sgd, adamw"),
            (self.loss in LOSSES, "loss", self.loss, ", ".join(LOSSES)),
            (self.class_weights in CLASS_WEIGHTS, "class-weights", self.class_weights, ", ".join(CLASS_WEIGHTS)),
            (self.data_on_device in ("auto", "on", "off"), "data-on-device", self.data_on_device, "auto, on, off"),
            (self.sync_every >= 0, "sync-every", self.sync_every, ">= 0 (0 = automatic)"),
            (self.amp in AMP_MODES, "amp", self.amp, ", ".join(AMP_MODES)),
            (self.epochs >= 1, "epochs", self.epochs, ">= 1"),
            # BatchNorm after the 1x1 pyramid-pooling bin needs more than one value per channel.
            (self.batch_size >= 2, "batch-size", self.batch_size, ">= 2 (per process)"),
            (min(self.crop) >= 32, "crop", "x".join(map(str, self.crop)), "HxW with both sides >= 32"),
            (0 < self.scale[0] <= self.scale[1], "scale", self.scale, "0 < min <= max"),
            (0 <= self.jitter < 1, "jitter", self.jitter, "0 <= jitter < 1"),
            (self.val_every >= 1, "val-every", self.val_every, ">= 1"),
            (self.patience >= 0, "patience", self.patience, ">= 0 (0 = never stop early)"),
            (self.lr is None or self.lr > 0, "lr", self.lr, "> 0"),
            (self.weight_decay is None or self.weight_decay >= 0, "weight-decay", self.weight_decay, ">= 0"),
            (self.warmup_epochs >= 0, "warmup-epochs", self.warmup_epochs, ">= 0"),
            (self.aux_weight is None or self.aux_weight >= 0, "aux-weight", self.aux_weight, ">= 0 (0 = no aux heads)"),
            (self.model in list_models(), "model", self.model, ", ".join(list_models())),
            (self.width >= 0, "width", self.width, ">= 0 (0 = the network's default)"),
            (self.width == 0 or self.model not in list_models() or "width" in model_options(self.model), "width",
             self.width, f"0 with {self.model} (only networks with a width option take it: "
             + ", ".join(m for m in list_models() if "width" in model_options(m)) + ")"),
            (self.clip_grad >= 0, "clip-grad", self.clip_grad, ">= 0 (0 = off)"),
            (self.workers >= 0, "workers", self.workers, ">= 0"),
            (self.limit >= 0, "limit", self.limit, ">= 0 (0 = all)"),
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

    @classmethod
    def from_checkpoint(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """The configuration a last.pt was trained with, for ``--resume``: ``overrides`` (the
        options the user did pass) replace saved values; out_dir defaults to the file's folder."""
        meta = load_checkpoint(path)["meta"]
        saved = dict(meta.extra.get("train_config", {}))
        if not saved:
            raise RtsegError(f"{path} records no training configuration; resume from a last.pt written by rtseg train")
        known = {f.name for f in fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
        kw.update(out_dir=str(Path(path).parent), init=None)
        kw.update(overrides)
        kw["resume"] = str(path)
        return cls(**kw)


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
    """auto -> cuda when PyTorch sees a GPU, else cpu; a one-line error for an unusable choice."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RtsegError(f"--device {device}: this PyTorch build sees no CUDA GPU; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise RtsegError(f"--device {device!r} is not allowed; use auto, cpu, cuda or cuda:N")
    return device


def _class_pixel_counts(ds: SegDataset, indices: Iterable[int]) -> np.ndarray:
    """Labelled pixels per class over the given items (reads every label once: ~1 s for CamVid train)."""
    n = ds.info.num_classes
    counts = np.zeros(n, np.int64)
    for i in indices:
        _, label = ds.read(i)
        counts += np.bincount(label[label != IGNORE].ravel(), minlength=n)[:n]
    return counts


def _seed_epoch(seed: int, epoch: int, rank: int, g: torch.Generator) -> None:
    """Seed python, numpy, torch and the DataLoader's generator (which seeds the workers'
    augmentation) from (seed, epoch, rank): an epoch's randomness does not depend on how the
    run got there, which is what makes --resume exact."""
    s = (seed * 1_000_003 + epoch * 1009 + rank) % 2**31
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    g.manual_seed(s)


def _one_line_batches(loader: DataLoader) -> Iterator:
    """Iterate a DataLoader; a dataset error raised in a worker process arrives wrapped in a
    traceback, so keep only its own message (the CLI prints one line)."""
    try:
        yield from loader
    except RtsegError as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else str(exc)
        raise RtsegError(last.split("RtsegError: ", 1)[-1]) from None


def train(cfg: TrainConfig, callbacks: TrainCallbacks | None = None) -> dict[str, Any]:
    """Train, validate and checkpoint; returns ``{"best_miou", "best_epoch", "history", "out_dir"}``."""
    cfg.validate()
    cb = callbacks or TrainCallbacks()
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    if info.enabled and device.startswith("cuda"):
        device = f"cuda:{info.local_rank}"
    try:
        return _train(cfg, cb, device, info)
    finally:
        cleanup(info)


def _train(cfg: TrainConfig, cb: TrainCallbacks, device: str, info: DistInfo) -> dict[str, Any]:
    out = Path(cfg.out_dir)
    autocast, scaler = autocast_and_scaler(cfg.amp, device)  # first: a bad --amp fails before any work
    g = torch.Generator()
    _seed_epoch(cfg.seed, 0, 0, g)  # model initialisation: the same on every rank
    # --- data
    train_ds = build_dataset(cfg.dataset, cfg.data_root, cfg.train_split)
    val_ds = build_dataset(cfg.dataset, cfg.data_root, cfg.val_split)
    aug = AugmentConfig(scale=cfg.scale, crop=cfg.crop, jitter=cfg.jitter, ignore_index=IGNORE)
    train_ds.transform = functools.partial(augment, cfg=aug)  # picklable: workers start by forkserver
    num_classes = train_ds.info.num_classes
    if val_ds.info.class_names != train_ds.info.class_names:
        raise RtsegError(f"the '{cfg.train_split}' and '{cfg.val_split}' splits have different classes")
    n_train = min(cfg.limit, len(train_ds)) if cfg.limit else len(train_ds)
    n_val = min(cfg.limit, len(val_ds)) if cfg.limit else len(val_ds)
    weights = None
    if CLASS_WEIGHTS[cfg.class_weights] is not None:
        weights = enet_weights(_class_pixel_counts(train_ds, range(n_train)), c=CLASS_WEIGHTS[cfg.class_weights]).to(device)
        cb.on_message(f"{cfg.class_weights} class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(train_ds.info.class_names, weights.tolist())))
    train_set = Subset(train_ds, range(n_train))
    # Each rank validates its own slice, without the padding DistributedSampler would add
    # (padding would count some frames twice); the confusion matrices are then summed.
    val_set = Subset(val_ds, range(info.rank, n_val, info.world_size))
    train_sampler = DistributedSampler(train_set, info.world_size, info.rank, shuffle=True, seed=cfg.seed) if info.enabled else None
    # Workers start from a clean forkserver process, not by forking this one: a fork copies only
    # the calling thread, so a process that had started thread pools (OpenVINO's, say, in a
    # script that also runs inference) could hand a worker a lock held forever, and crash.
    context = "forkserver" if cfg.workers > 0 and "forkserver" in mp.get_all_start_methods() else None
    # drop_last keeps BatchNorm away from a batch of one at the end of an epoch.
    drop_last = math.ceil(len(train_set) / info.world_size) > cfg.batch_size
    if math.ceil(len(train_set) / info.world_size) < 2:
        raise RtsegError(f"{len(train_set)} training image(s) for {info.world_size} process(es): each needs at least 2")
    on_device = cfg.data_on_device == "on" or (cfg.data_on_device == "auto" and device.startswith("cuda"))
    device_train = device_val = train_loader = None
    if on_device:
        t_load = time.perf_counter()
        device_train = DeviceData(train_ds, range(n_train), device)
        if not info.enabled:  # under DDP each rank validates its own shard through the DataLoader
            try:
                device_val = DeviceData(val_ds, range(n_val), device)
            except RtsegError:  # frames of several sizes: validated one by one below
                device_val = None
        held = device_train.nbytes + (device_val.nbytes if device_val is not None else 0)
        cb.on_message(f"data on {device}: {len(device_train)} train" + (f" + {len(device_val)} val" if device_val else "")
                      + f" frames, {held / 2**20:.0f} MiB as uint8, decoded in {time.perf_counter() - t_load:.1f} s")
    else:
        train_loader = DataLoader(train_set, cfg.batch_size, shuffle=train_sampler is None, sampler=train_sampler,
                                  num_workers=cfg.workers, drop_last=drop_last,
                                  persistent_workers=cfg.workers > 0, generator=g, multiprocessing_context=context)
    # Batch 1: frames of a folder data set may differ in size; on the CPU batching buys nothing.
    val_workers = min(cfg.workers, 1) if device_val is None else 0
    val_loader = DataLoader(val_set, 1, num_workers=val_workers, persistent_workers=val_workers > 0,
                            multiprocessing_context=context if val_workers else None)

    # --- model, loss, optimiser
    model_args = {"width": cfg.width} if cfg.width else {}
    meta = ModelMeta(model=cfg.model, model_args=model_args, num_classes=num_classes, class_names=train_ds.info.class_names,
                     palette=train_ds.info.palette, input_size=tuple(cfg.val_size or val_ds.read(0)[1].shape), dataset=train_ds.info.name,
                     extra={"train_config": _jsonable(asdict(cfg))})
    model = create_model(cfg.model, num_classes=num_classes, aux=cfg.aux_weight != 0, **model_args)
    # The papers' weights per auxiliary head, or the one weight the user gave for each.
    aux_weights = model.aux_weights if cfg.aux_weight is None else (cfg.aux_weight,) * len(model.aux_weights)
    if cfg.init:
        try:
            missing = model.load_state_dict(load_checkpoint(cfg.init)["state_dict"], strict=False)
        except RuntimeError as exc:
            raise RtsegError(f"--init {cfg.init} does not fit {cfg.model} with {num_classes} classes "
                             f"({str(exc).strip().splitlines()[-1].strip()[:160]})") from None
        cb.on_message(f"initialised from {cfg.init} (missing: {len(missing.missing_keys)}, unexpected: {len(missing.unexpected_keys)})")
    model = model.to(device, memory_format=torch.channels_last)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # training shapes are fixed: pick the fastest kernels once
    if info.enabled and device.startswith("cuda"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # PyTorch's SyncBatchNorm is GPU-only
    criterion = build_loss(cfg.loss, ignore_index=IGNORE, class_weights=weights, aux_weight=aux_weights).to(device)
    optimizer = build_optimizer(model, cfg.optimizer, lr=cfg.peak_lr, weight_decay=cfg.decay, momentum=cfg.momentum)

    start_epoch, best_miou, best_epoch, stale, history = 1, -1.0, 0, 0, []
    if cfg.resume:
        state = load_checkpoint(cfg.resume, map_location=device)
        t = state["train"]
        if "optimizer" not in t:
            raise RtsegError(f"{cfg.resume} holds no training state (is it a best.pt?); resume from last.pt")
        try:
            model.load_state_dict(state["state_dict"])
        except RuntimeError as exc:
            raise RtsegError(f"--resume {cfg.resume} does not fit this run's model ({str(exc).strip().splitlines()[0][:160]})") from None
        optimizer.load_state_dict(t["optimizer"])
        if scaler is not None and "scaler" in t:
            scaler.load_state_dict(t["scaler"])
        start_epoch, best_miou, best_epoch = int(t["epoch"]) + 1, float(t["best_miou"]), int(t["best_epoch"])
        stale, history = int(t.get("stale", 0)), list(t.get("history", []))
        cb.on_message(f"resumed from {cfg.resume} at epoch {start_epoch} of {cfg.epochs}")
        if start_epoch > cfg.epochs:
            cb.on_message(f"nothing to do: {cfg.resume} finished epoch {start_epoch - 1}; raise --epochs to train on")
    net = nn.parallel.DistributedDataParallel(model) if info.enabled else model
    # The training step may run a compiled network; validation, checkpoints and exports keep `model`
    # (the same parameters), so the saved weights never carry the compiler's wrapper.
    cuda_graphs = cfg.compile and device.startswith("cuda")
    step_net = torch.compile(net, mode="reduce-overhead" if cuda_graphs else "default") if cfg.compile else net

    writer = _tensorboard(out / "tensorboard", cb) if cfg.tensorboard and info.is_main else None
    if device_train is not None:
        steps_per_epoch = device_train.steps(cfg.batch_size, drop_last, info.rank, info.world_size)
    else:
        steps_per_epoch = len(train_loader)
    # Reading the loss back waits for the device; on a GPU that stalls the queue of launched work,
    # so it happens every sync_every steps there (the loss is summed on the device meanwhile).
    sync_every = cfg.sync_every or (20 if device.startswith("cuda") else 1)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
    net_desc = cfg.model + "".join(f" {k} {v}" for k, v in model_args.items()) + (
        f" (auxiliary heads: {', '.join(f'{w:g}' for w in aux_weights)})" if aux_weights else "")
    cb.on_message(f"training {net_desc} on {train_ds.info.name} '{cfg.train_split}' ({n_train} frames"
                  f"{', held on the device' if device_train is not None else ''}), validating on '{cfg.val_split}' "
                  f"({n_val} frames) every {cfg.val_every} epoch(s); {device}, mixed precision {amp_mode(cfg.amp, device)}; "
                  f"{cfg.epochs - start_epoch + 1} epoch(s) of {steps_per_epoch} steps of {cfg.batch_size} "
                  f"{cfg.crop[0]}x{cfg.crop[1]} crops" + (f" x {info.world_size} processes" if info.enabled else ""))
    t_first: float | None = None  # when the run's second step began: the first is warm-up
    for epoch in range(start_epoch, cfg.epochs + 1):
        # --- train one epoch
        _seed_epoch(cfg.seed, epoch, info.rank, g)
        net.train()
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        cb.on_epoch_start(epoch, cfg.epochs, steps_per_epoch)
        t0, loss_sum = time.perf_counter(), torch.zeros((), device=device)
        if device_train is not None:
            batches = device_train.batches(cfg.batch_size, aug, g, drop_last=drop_last, rank=info.rank, world_size=info.world_size)
        else:
            batches = _one_line_batches(train_loader)
        for step, (images, labels) in enumerate(batches):
            gstep = (epoch - 1) * steps_per_epoch + step
            lr = lr_at(gstep, total_steps, optimizer=cfg.optimizer, peak=cfg.peak_lr,
                       warmup_steps=warmup_steps, poly_power=cfg.poly_power)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = images.to(device, memory_format=torch.channels_last, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()  # a new iteration: last step's graph outputs may be reused
            with autocast:
                loss = criterion(step_net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            else:
                loss.backward()
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            loss_sum += loss.detach()
            if (step + 1) % sync_every == 0 or step + 1 == steps_per_epoch:
                value = loss.item()  # syncs the device
                if not math.isfinite(value):
                    raise RtsegError(f"loss became {value} at epoch {epoch} step {step}; lower --lr or set --clip-grad")
                cb.on_step(epoch, step, value, lr)
                done = (epoch - start_epoch) * steps_per_epoch + step + 1  # steps this run has taken
                if done == 1:
                    t_first = time.perf_counter()
                elif t_first is not None and done >= 1 + max(4, sync_every):  # a few timed steps: say how long
                    per_step = (time.perf_counter() - t_first) / (done - 1)
                    left = (cfg.epochs - start_epoch + 1) * steps_per_epoch - done
                    cb.on_message(f"about {_duration(per_step * left)} to go at {per_step * 1e3:.0f} ms a step "
                                  f"(from the first {done} steps; validation not counted)")
                    t_first = None
                if writer is not None:
                    writer.add_scalar("train/loss", value, gstep)
                    writer.add_scalar("train/lr", lr, gstep)
        loss_sum = loss_sum.item()
        seconds = time.perf_counter() - t0
        # The epoch's mean loss over every rank's steps (one tiny all-reduce per epoch).
        train_loss = all_reduce_sum(torch.tensor([loss_sum]), info).item() / (steps_per_epoch * info.world_size)
        cb.on_epoch_end(epoch, train_loss, seconds)
        record = {"epoch": epoch, "train_loss": train_loss, "steps": steps_per_epoch, "seconds": round(seconds, 1)}
        if writer is not None:
            writer.add_scalar("train/epoch_loss", train_loss, epoch)

        # --- validate, checkpoint
        improved = False
        if epoch % cfg.val_every == 0 or epoch == cfg.epochs:
            if device_val is not None:
                cm = evaluate_device(model, device_val, num_classes, size=cfg.val_size, ignore_index=IGNORE)
            else:
                cm = evaluate_model(model, val_loader, num_classes, device, info, size=cfg.val_size)
            metrics = cm.compute(train_ds.info.class_names)
            record.update(val_miou=metrics["miou"], val_pixel_acc=metrics["pixel_acc"], val_mean_dice=metrics["mean_dice"])
            improved = metrics["miou"] > best_miou
            if improved:
                best_miou, best_epoch, stale = metrics["miou"], epoch, 0
            else:
                stale += 1
            cb.on_validate(epoch, metrics, improved)
            if writer is not None:
                for key in ("miou", "pixel_acc", "mean_dice"):
                    writer.add_scalar(f"val/{key}", metrics[key], epoch)
                _log_predictions(writer, model, val_ds, meta, device, epoch)
            if improved and info.is_main:
                best_meta = replace(meta, extra={**meta.extra, "epoch": epoch, "val": _jsonable(metrics)})
                save_checkpoint(out / "best.pt", model, best_meta, epoch=epoch)
        history.append(record)
        if info.is_main:
            extra = {"scaler": scaler.state_dict()} if scaler is not None else {}
            save_checkpoint(out / "last.pt", model, meta, epoch=epoch, optimizer=optimizer.state_dict(),
                            best_miou=best_miou, best_epoch=best_epoch, stale=stale, history=history, **extra)
        if cfg.patience and stale >= cfg.patience:
            cb.on_message(f"early stop: no better val mIoU for {cfg.patience} validations (best {best_miou:.4f} at epoch {best_epoch})")
            break
    if writer is not None:
        writer.close()
    result = {"best_miou": best_miou, "best_epoch": best_epoch, "history": history, "out_dir": str(out)}
    if cfg.calibrate:
        result["calibration"] = _calibrate(cfg, cb, out, model, val_loader, weights, device, info, train_ds.info.class_names)
        if result["calibration"]:
            result["best_miou"] = result["calibration"]["val_miou_after"]
    return result


def _calibrate(cfg: TrainConfig, cb: TrainCallbacks, out: Path, model: nn.Module, val_loader: DataLoader,
               weights: torch.Tensor | None, device: str, info: DistInfo, class_names: list[str]) -> dict | None:
    """Tune on the validation split the logit offset that undoes the class weights, and fold it
    into best.pt; the file as trained stays beside it as best_uncalibrated.pt. Returns what was
    done, or None when there was nothing to do (no weights, no best.pt, already calibrated, or
    no offset beat none)."""
    best = out / "best.pt"
    if weights is None:
        cb.on_message("--calibrate: there are no class weights to undo (it applies to --class-weights enet and espnet)")
        return None
    if not best.is_file():
        cb.on_message(f"--calibrate: {best} does not exist yet")
        return None
    state = load_checkpoint(best, map_location=device)
    meta = state["meta"]
    if "calibration" in meta.extra:
        cb.on_message(f"--calibrate: {best} is calibrated already (tau {meta.extra['calibration']['tau']:g}); left as is")
        return None
    net = getattr(model, "module", model)
    net.load_state_dict(state["state_dict"])
    log_w = weights.log()
    scores = tune_logit_offset(net, val_loader, log_w, len(class_names), device, size=cfg.val_size, info=info)
    tau = max(scores, key=scores.get)  # the first (smallest) tau on a tie
    cb.on_message("logit offset on val: " + ", ".join(f"tau {t:g} mIoU {m:.4f}" for t, m in scores.items()))
    if tau == 0:
        cb.on_message("--calibrate: no offset beats none; best.pt left as is")
        return None
    fold_logit_offset(net, log_w, tau)
    metrics = evaluate_model(net, val_loader, len(class_names), device, info, size=cfg.val_size).compute(class_names)
    done = {"tau": tau, "val_miou_before": scores[0.0], "val_miou_after": metrics["miou"],
            "offsets": (-tau * log_w).tolist()}
    if info.is_main:
        shutil.copy2(best, out / "best_uncalibrated.pt")
        calibrated = replace(meta, extra={**meta.extra, "val": _jsonable(metrics), "calibration": done})
        save_checkpoint(best, net, calibrated, **state["train"])
    cb.on_message(f"--calibrate: tau {tau:g} folded into {best}: val mIoU {done['val_miou_before']:.4f} -> "
                  f"{done['val_miou_after']:.4f} (as trained: best_uncalibrated.pt)")
    return done


def _duration(seconds: float) -> str:
    """3725 -> '1 h 2 min'; 95 -> '1 min 35 s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


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
    """A few val frames: image | ground truth | prediction (ignored pixels black)."""
    from rtseg.viz import colorize

    model.eval()
    for i in range(min(n, len(ds))):
        img, label = ds.read(i)
        pred = model(to_tensor(img)[None].to(device)).argmax(1)[0].to(torch.uint8).cpu().numpy()
        row = np.concatenate([img, colorize(label, meta.palette), colorize(pred, meta.palette)], axis=1)
        writer.add_image(f"val/prediction_{i}", row[:, :, ::-1], epoch, dataformats="HWC")  # BGR -> RGB
