"""The training loop, readable top to bottom: :func:`train` builds the data, the model, loss and
optimiser, resumes, then runs epochs of train steps with validation and checkpoints.

Runs alone or under ``torchrun`` (DistributedDataParallel; SyncBatchNorm on CUDA only, since
PyTorch's SyncBatchNorm has no CPU kernel). Every epoch reseeds every random source from
(seed, epoch, rank), so ``--resume`` from last.pt continues exactly as the uninterrupted run
would have: last.pt holds the weights, the optimiser's (and loss scaler's) state and a
:class:`TrainState`. Progress goes to a :class:`TrainCallbacks` object so that the CLI can draw
it; this module logs through ``logging`` only.
"""
from __future__ import annotations

import json
import math
import random
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from rtseg.formats.checkpoint import load_checkpoint, save_checkpoint
from rtseg.devices import parse_device
from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta
from rtseg.nets import create_model
from rtseg.train.calibrate import calibrate_best
from rtseg.train.callbacks import TrainCallbacks, log_predictions, open_tensorboard
from rtseg.train.config import CLASS_WEIGHTS, TrainConfig, jsonable
from rtseg.train.data import IGNORE
from rtseg.train.device_data import evaluate_device
from rtseg.train.dist import DistInfo, all_reduce_sum, cleanup, init_distributed
from rtseg.train.evaluate import evaluate_model
from rtseg.train.loaders import TrainData, build_data
from rtseg.train.losses import build_loss
from rtseg.train.optim import amp_mode, autocast_and_scaler, build_optimizer, lr_at
from rtseg.train.stopping import TrainingStopped, rng_state, set_rng_state, stop_agreed

__all__ = ["TrainConfig", "TrainCallbacks", "TrainState", "TrainingStopped", "train", "evaluate_model", "resolve_device", "CLASS_WEIGHTS"]


@dataclass
class TrainState:
    """Where a run stands after an epoch; last.pt's ``train`` entry holds it (beside the
    optimiser's and scaler's state), and ``--resume`` starts from it."""

    epoch: int = 0  # the last finished epoch (0: none yet)
    best_miou: float = -1.0  # the best validation mIoU so far (-1: not validated yet)
    best_epoch: int = 0  # the epoch that reached it (best.pt's)
    stale: int = 0  # validations since the best one, for --patience
    history: list[dict] = field(default_factory=list)  # one record an epoch: train_loss, steps, seconds, val_*
    # Stopped inside epoch + 1: its steps taken (0: none); their loss sum, seconds and random streams (stopping.py)
    step: int = 0
    partial: dict = field(default_factory=dict)

    @classmethod
    def from_checkpoint(cls, t: dict[str, Any]) -> "TrainState":
        return cls(int(t["epoch"]), float(t["best_miou"]), int(t["best_epoch"]), int(t.get("stale", 0)),
                   list(t.get("history", [])), int(t.get("step", 0)), dict(t.get("partial", {})))


def resolve_device(device: str) -> str:
    """auto -> cuda when PyTorch sees a GPU, else cpu; a one-line error for an unusable choice."""
    dev = parse_device(device).resolve(torch.cuda.is_available)
    if dev.is_cuda and not torch.cuda.is_available():
        raise RtsegError(f"--device {device}: this PyTorch build sees no CUDA GPU; use --device cpu")
    return dev.kind if dev.index == 0 else str(dev)  # "cpu", "cuda" or "cuda:N"


def train(cfg: TrainConfig, callbacks: TrainCallbacks | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """Train, validate and checkpoint; returns ``{"best_miou", "best_epoch", "history", "out_dir"}``.
    ``stop`` (set it from a signal handler) ends the run at the next step boundary, or after the
    validation under way, with a resumable last.pt: raises :class:`TrainingStopped`."""
    cfg.validate()
    cb = callbacks or TrainCallbacks()
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    if info.enabled and device.startswith("cuda"):
        device = f"cuda:{info.local_rank}"
    try:
        return _train(cfg, cb, device, info, stop)
    finally:
        cleanup(info)


def _train(cfg: TrainConfig, cb: TrainCallbacks, device: str, info: DistInfo,
           stop: threading.Event | None) -> dict[str, Any]:
    out = Path(cfg.out_dir)
    if info.is_main:  # the folder and the run's settings exist from the first second, whatever stops it
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_json(), indent=1) + "\n")
    autocast, scaler = autocast_and_scaler(cfg.amp, device)  # first: a bad --amp fails before any work
    g = torch.Generator()
    _seed_epoch(cfg.seed, 0, 0, g)  # model initialisation: the same on every rank
    data = build_data(cfg, device, info, g, cb)
    model, meta, aux_weights = _build_model(cfg, data, device, info, cb)
    criterion = build_loss(cfg.loss, ignore_index=IGNORE, class_weights=data.weights, aux_weight=aux_weights).to(device)
    optimizer = build_optimizer(model, cfg.optimizer, lr=cfg.peak_lr, weight_decay=cfg.decay, momentum=cfg.momentum)
    state = _resume(cfg, model, optimizer, scaler, device, cb) if cfg.resume else TrainState()
    net = nn.parallel.DistributedDataParallel(model) if info.enabled else model
    # The training step may run a compiled network; validation, checkpoints and exports keep `model`
    # (the same parameters), so the saved weights never carry the compiler's wrapper.
    cuda_graphs = cfg.compile and device.startswith("cuda")
    step_net = torch.compile(net, mode="reduce-overhead" if cuda_graphs else "default") if cfg.compile else net
    writer = open_tensorboard(out / "tensorboard", cb) if cfg.tensorboard and info.is_main else None
    steps = data.steps_per_epoch(cfg.batch_size, info)
    run = _Run(cfg=cfg, cb=cb, device=device, info=info, out=out, data=data, model=model, meta=meta, net=net,
               step_net=step_net, cuda_graphs=cuda_graphs, criterion=criterion, optimizer=optimizer,
               autocast=autocast, scaler=scaler, writer=writer, g=g, steps=steps,
               # Reading the loss back waits for the device; on a GPU that stalls the queue of launched
               # work, so it happens every sync_every steps there (the loss is summed on the device meanwhile).
               sync_every=cfg.sync_every or (20 if device.startswith("cuda") else 1), stop=stop)
    cb.on_message(_plan(run, aux_weights, state.epoch + 1))
    clock = _TimeLeft(state.epoch + 1, cfg.epochs, steps, run.sync_every)
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        record = _train_epoch(run, epoch, clock, state)
        state.epoch, state.step, state.partial = epoch, 0, {}
        state.history.append(record)
        if epoch % cfg.val_every == 0 or epoch == cfg.epochs:
            _save_last(run, state)  # the finished epoch is kept, whatever stops the validation
            if stop_agreed(run.stop, info, device):
                raise TrainingStopped(out / "last.pt", epoch, 0)
            _validate(run, state, epoch, record)
        _save_last(run, state)
        if stop_agreed(run.stop, info, device):
            raise TrainingStopped(out / "last.pt", epoch, 0)
        if cfg.patience and state.stale >= cfg.patience:
            cb.on_message(f"early stop: no better val mIoU for {cfg.patience} validations "
                          f"(best {state.best_miou:.4f} at epoch {state.best_epoch})")
            break
    if writer is not None:
        writer.close()
    result = {"best_miou": state.best_miou, "best_epoch": state.best_epoch, "history": state.history, "out_dir": str(out)}
    if cfg.calibrate:
        result["calibration"] = calibrate_best(out, model, data.val_loader, data.weights, device, info,
                                               data.train_ds.info.class_names, size=cfg.val_size, say=cb.on_message)
        if result["calibration"]:
            result["best_miou"] = result["calibration"]["val_miou_after"]
    return result


# --- the steps, in the order _train takes them


def _seed_epoch(seed: int, epoch: int, rank: int, g: torch.Generator) -> None:
    """Seed python, numpy, torch and the DataLoader's generator (which seeds the workers'
    augmentation) from (seed, epoch, rank): an epoch's randomness does not depend on how the
    run got there, which is what makes --resume exact."""
    s = (seed * 1_000_003 + epoch * 1009 + rank) % 2**31
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    g.manual_seed(s)


def _build_model(cfg: TrainConfig, data: TrainData, device: str, info: DistInfo,
                 cb: TrainCallbacks) -> tuple[nn.Module, ModelMeta, tuple[float, ...]]:
    """The network on the device (--init weights loaded), its metadata and each auxiliary head's loss weight."""
    ds = data.train_ds.info
    model_args = {"width": cfg.width} if cfg.width else {}
    meta = ModelMeta(model=cfg.model, model_args=model_args, num_classes=ds.num_classes, class_names=ds.class_names,
                     palette=ds.palette, input_size=tuple(cfg.val_size or data.val_ds.read(0)[1].shape), dataset=ds.name,
                     extra={"train_config": cfg.to_json()})
    model = create_model(cfg.model, num_classes=ds.num_classes, aux=cfg.aux_weight != 0, **model_args)
    # The papers' weights per auxiliary head, or the one weight the user gave for each.
    aux_weights = model.aux_weights if cfg.aux_weight is None else (cfg.aux_weight,) * len(model.aux_weights)
    if cfg.init:
        try:
            missing = model.load_state_dict(load_checkpoint(cfg.init)["state_dict"], strict=False)
        except RuntimeError as exc:
            raise RtsegError(f"--init {cfg.init} does not fit {cfg.model} with {ds.num_classes} classes "
                             f"({str(exc).strip().splitlines()[-1].strip()[:160]})") from None
        cb.on_message(f"initialised from {cfg.init} (missing: {len(missing.missing_keys)}, unexpected: {len(missing.unexpected_keys)})")
    model = model.to(device, memory_format=torch.channels_last)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # training shapes are fixed: pick the fastest kernels once
    if info.enabled and device.startswith("cuda"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # PyTorch's SyncBatchNorm is GPU-only
    return model, meta, aux_weights


def _resume(cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler | None, device: str, cb: TrainCallbacks) -> TrainState:
    """Load --resume's last.pt into the model, optimiser and scaler; its state says where to go on."""
    saved = load_checkpoint(cfg.resume, map_location=device)
    t = saved["train"]
    if "optimizer" not in t:
        raise RtsegError(f"{cfg.resume} holds no training state (is it a best.pt?); resume from last.pt")
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise RtsegError(f"--resume {cfg.resume} does not fit this run's model ({str(exc).strip().splitlines()[0][:160]})") from None
    optimizer.load_state_dict(t["optimizer"])
    if scaler is not None and "scaler" in t:
        scaler.load_state_dict(t["scaler"])
    state = TrainState.from_checkpoint(t)
    inside = f", step {state.step + 1} of its {t.get('steps', '?')}" if state.step else ""
    cb.on_message(f"resumed from {cfg.resume} at epoch {state.epoch + 1} of {cfg.epochs}{inside}")
    if state.epoch + 1 > cfg.epochs:
        cb.on_message(f"nothing to do: {cfg.resume} finished epoch {state.epoch}; raise --epochs to train on")
    return state


@dataclass(frozen=True)
class _Run:
    """Everything the epochs use, built once by _train."""

    cfg: TrainConfig
    cb: TrainCallbacks
    device: str
    info: DistInfo
    out: Path
    data: TrainData
    model: nn.Module  # the plain network: validation and checkpoints
    meta: ModelMeta
    net: nn.Module  # model, or DDP around it
    step_net: nn.Module  # net, or torch.compile around it: the training step
    cuda_graphs: bool  # step_net replays CUDA graphs (--compile on CUDA)
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    autocast: Any  # the forward pass's mixed-precision context
    scaler: torch.amp.GradScaler | None  # fp16 only
    writer: Any | None  # TensorBoard
    g: torch.Generator  # the DataLoader's (or on-device batches') generator, reseeded each epoch
    steps: int  # training steps an epoch
    sync_every: int  # read the loss back every N steps
    stop: threading.Event | None = None  # set: stop at the next step boundary (stopping.py)


def _plan(run: _Run, aux_weights: tuple[float, ...], start_epoch: int) -> str:
    """The line that says what the run is about to do."""
    cfg, data, info = run.cfg, run.data, run.info
    net_desc = run.meta.model + "".join(f" {k} {v}" for k, v in run.meta.model_args.items()) + (
        f" (auxiliary heads: {', '.join(f'{w:g}' for w in aux_weights)})" if aux_weights else "")
    return (f"training {net_desc} on {data.train_ds.info.name} '{cfg.train_split}' ({data.n_train} frames"
            f"{', held on the device' if data.device_train is not None else ''}), validating on '{cfg.val_split}' "
            f"({data.n_val} frames) every {cfg.val_every} epoch(s); {run.device}, mixed precision {amp_mode(cfg.amp, run.device)}; "
            f"{cfg.epochs - start_epoch + 1} epoch(s) of {run.steps} steps of {cfg.batch_size} "
            f"{cfg.crop[0]}x{cfg.crop[1]} crops" + (f" x {info.world_size} processes" if info.enabled else ""))


class _TimeLeft:
    """The 'about 1 h 2 min to go' line, said once: timed from the run's second step (the first
    warms up) over a few more."""

    def __init__(self, start_epoch: int, epochs: int, steps: int, sync_every: int):
        self.start_epoch, self.steps = start_epoch, steps
        self.total = (epochs - start_epoch + 1) * steps  # steps this run will take
        self.enough = 1 + max(4, sync_every)  # steps taken before the estimate
        self.t_first: float | None = None  # when the run's second step began

    def after(self, epoch: int, step: int) -> str | None:
        done = (epoch - self.start_epoch) * self.steps + step + 1  # steps this run has taken
        if done == 1:
            self.t_first = time.perf_counter()
        elif self.t_first is not None and done >= self.enough:
            per_step = (time.perf_counter() - self.t_first) / (done - 1)
            self.t_first = None
            return (f"about {_duration(per_step * (self.total - done))} to go at {per_step * 1e3:.0f} ms a step "
                    f"(from the first {done} steps; validation not counted)")
        return None


def _train_epoch(run: _Run, epoch: int, clock: _TimeLeft, state: TrainState) -> dict[str, Any]:
    """One epoch of training steps; returns its history record (mean loss, steps, seconds). A run
    stopped inside this epoch (``state.step``) goes on from there: the batches already trained on
    are drawn again (the same random streams) but not trained on, then the saved streams are put
    back. A stop asked for ends the epoch at a step boundary with a resumable last.pt."""
    cfg, info = run.cfg, run.info
    _seed_epoch(cfg.seed, epoch, info.rank, run.g)
    run.net.train()
    if run.data.train_sampler is not None:
        run.data.train_sampler.set_epoch(epoch)
    run.cb.on_epoch_start(epoch, cfg.epochs, run.steps)
    skip = state.step if epoch == state.epoch + 1 else 0
    t0 = time.perf_counter() - (state.partial.get("seconds", 0.0) if skip else 0.0)
    loss_sum = torch.full((), state.partial.get("loss_sum", 0.0) if skip else 0.0, device=run.device)
    total_steps, warmup_steps = cfg.epochs * run.steps, int(cfg.warmup_epochs * run.steps)
    for step, (images, labels) in enumerate(run.data.batches(cfg.batch_size, run.g, info)):
        if step < skip:
            if step + 1 == skip:
                set_rng_state(state.partial["rng"], run.g, run.device)
            continue
        gstep = (epoch - 1) * run.steps + step
        lr = lr_at(gstep, total_steps, optimizer=cfg.optimizer, peak=cfg.peak_lr,
                   warmup_steps=warmup_steps, poly_power=cfg.poly_power)
        loss = _train_step(run, images, labels, lr)
        loss_sum += loss
        if (step + 1) % run.sync_every == 0 or step + 1 == run.steps:
            _report_step(run, clock, epoch, step, loss, lr, gstep)
        # Asked at the steps that read the loss back anyway (each step on a CPU): no extra GPU sync.
        if step + 1 < run.steps and (step + 1) % run.sync_every == 0 and stop_agreed(run.stop, info, run.device):
            _save_inside(run, state, epoch, step + 1, loss_sum.item(), time.perf_counter() - t0)
            raise TrainingStopped(run.out / "last.pt", epoch, step + 1)
    loss_sum = loss_sum.item()
    seconds = time.perf_counter() - t0
    # The epoch's mean loss over every rank's steps (one tiny all-reduce per epoch).
    summed = all_reduce_sum(torch.tensor([loss_sum], device=run.device), info).item()  # NCCL: a tensor on the GPU
    train_loss = summed / (run.steps * info.world_size)
    run.cb.on_epoch_end(epoch, train_loss, seconds)
    if run.writer is not None:
        run.writer.add_scalar("train/epoch_loss", train_loss, epoch)
    return {"epoch": epoch, "train_loss": train_loss, "steps": run.steps, "seconds": round(seconds, 1)}


def _report_step(run: _Run, clock: _TimeLeft, epoch: int, step: int, loss: torch.Tensor, lr: float,
                 gstep: int) -> None:
    value = loss.item()  # syncs the device
    if not math.isfinite(value):
        raise RtsegError(f"loss became {value} at epoch {epoch} step {step}; lower --lr or set --clip-grad")
    run.cb.on_step(epoch, step, value, lr)
    said = clock.after(epoch, step)
    if said is not None:
        run.cb.on_message(said)
    if run.writer is not None:
        run.writer.add_scalar("train/loss", value, gstep)
        run.writer.add_scalar("train/lr", lr, gstep)


def _save_inside(run: _Run, state: TrainState, epoch: int, steps: int, loss_sum: float, seconds: float) -> None:
    """last.pt for a stop after ``steps`` steps of ``epoch``: the epochs before it finished, and where to go on."""
    state.step = steps
    state.partial = {"loss_sum": loss_sum, "seconds": seconds, "rng": rng_state(run.g, run.device)}
    _save_last(run, state)


def _train_step(run: _Run, images: torch.Tensor, labels: torch.Tensor, lr: float) -> torch.Tensor:
    """One optimiser step at ``lr``; returns the loss, detached (still on the device)."""
    optimizer, scaler = run.optimizer, run.scaler
    for group in optimizer.param_groups:
        group["lr"] = lr
    images = images.to(run.device, memory_format=torch.channels_last, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    if run.cuda_graphs:
        torch.compiler.cudagraph_mark_step_begin()  # a new iteration: last step's graph outputs may be reused
    with run.autocast:
        loss = run.criterion(run.step_net(images), labels)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    else:
        loss.backward()
    if run.cfg.clip_grad > 0:
        nn.utils.clip_grad_norm_(run.net.parameters(), run.cfg.clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return loss.detach()


def _validate(run: _Run, state: TrainState, epoch: int, record: dict[str, Any]) -> None:
    """Score the val split into ``record`` and ``state``; a better mIoU writes best.pt."""
    cfg, data, info = run.cfg, run.data, run.info
    num_classes, class_names = data.train_ds.info.num_classes, data.train_ds.info.class_names
    if data.device_val is not None:
        cm = evaluate_device(run.model, data.device_val, num_classes, size=cfg.val_size, ignore_index=IGNORE)
    else:
        cm = evaluate_model(run.model, data.val_loader, num_classes, run.device, info, size=cfg.val_size)
    metrics = cm.compute(class_names)
    record.update(val_miou=metrics["miou"], val_pixel_acc=metrics["pixel_acc"], val_mean_dice=metrics["mean_dice"])
    improved = metrics["miou"] > state.best_miou
    if improved:
        state.best_miou, state.best_epoch, state.stale = metrics["miou"], epoch, 0
    else:
        state.stale += 1
    run.cb.on_validate(epoch, metrics, improved)
    if run.writer is not None:
        for key in ("miou", "pixel_acc", "mean_dice"):
            run.writer.add_scalar(f"val/{key}", metrics[key], epoch)
        log_predictions(run.writer, run.model, data.val_ds, run.meta, run.device, epoch)
    if improved and info.is_main:
        best_meta = replace(run.meta, extra={**run.meta.extra, "epoch": epoch, "val": jsonable(metrics)})
        save_checkpoint(run.out / "best.pt", run.model, best_meta, epoch=epoch)


def _save_last(run: _Run, state: TrainState) -> None:
    """last.pt: the weights, the optimiser's (and scaler's) state and ``state``, for --resume."""
    if not run.info.is_main:
        return
    extra = {"scaler": run.scaler.state_dict()} if run.scaler is not None else {}
    save_checkpoint(run.out / "last.pt", run.model, run.meta, epoch=state.epoch, optimizer=run.optimizer.state_dict(),
                    best_miou=state.best_miou, best_epoch=state.best_epoch, stale=state.stale, history=state.history,
                    step=state.step, steps=run.steps, partial=state.partial, **extra)


def _duration(seconds: float) -> str:
    """3725 -> '1 h 2 min'; 95 -> '1 min 35 s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"
