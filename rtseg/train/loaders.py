"""What the training loop trains and validates on: the two splits (``--limit``), the
``--class-weights`` they give, and the batches: a DataLoader, or frames held on the device."""
from __future__ import annotations

import functools
import math
import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from rtseg.errors import RtsegError
from rtseg.train.callbacks import TrainCallbacks
from rtseg.train.config import CLASS_WEIGHTS, TrainConfig
from rtseg.train.data import IGNORE, SegDataset, build_dataset
from rtseg.train.device_data import DeviceData
from rtseg.train.dist import DistInfo
from rtseg.train.losses import enet_weights
from rtseg.train.transforms import AugmentConfig, augment

__all__ = ["TrainData", "build_data"]


@dataclass(frozen=True)
class TrainData:
    """The splits and how batches come out of them: a DataLoader, or frames held on the device."""

    train_ds: SegDataset
    val_ds: SegDataset
    aug: AugmentConfig
    n_train: int  # frames used (--limit)
    n_val: int
    weights: torch.Tensor | None  # --class-weights, on the device
    drop_last: bool
    train_sampler: DistributedSampler | None  # under DDP
    train_loader: DataLoader | None  # None when the train split is held on the device
    device_train: DeviceData | None
    device_val: DeviceData | None  # the val split on the device (same-size frames, one process)
    val_loader: DataLoader  # always: --calibrate reads it

    def steps_per_epoch(self, batch_size: int, info: DistInfo) -> int:
        """Training steps in one epoch on this rank."""
        if self.device_train is not None:
            return self.device_train.steps(batch_size, self.drop_last, info.rank, info.world_size)
        return len(self.train_loader)

    def batches(self, batch_size: int, g: torch.Generator, info: DistInfo) -> Iterator:
        """One epoch of (images, labels) training batches."""
        if self.device_train is not None:
            return self.device_train.batches(batch_size, self.aug, g, drop_last=self.drop_last, rank=info.rank,
                                             world_size=info.world_size)
        return _one_line_batches(self.train_loader)


def build_data(cfg: TrainConfig, device: str, info: DistInfo, g: torch.Generator, cb: TrainCallbacks) -> TrainData:
    """The train and val splits of ``cfg``, this rank's share of them, and their batches; ``g``
    is the generator the train batches draw from (the loop reseeds it every epoch)."""
    train_ds = build_dataset(cfg.dataset, cfg.data_root, cfg.train_split)
    val_ds = build_dataset(cfg.dataset, cfg.data_root, cfg.val_split)
    aug = AugmentConfig(scale=cfg.scale, crop=cfg.crop, jitter=cfg.jitter, ignore_index=IGNORE)
    train_ds.transform = functools.partial(augment, cfg=aug)  # picklable: workers start by forkserver
    if val_ds.info.class_names != train_ds.info.class_names:
        raise RtsegError(f"the '{cfg.train_split}' and '{cfg.val_split}' splits have different classes")
    n_train = min(cfg.limit, len(train_ds)) if cfg.limit else len(train_ds)
    n_val = min(cfg.limit, len(val_ds)) if cfg.limit else len(val_ds)
    weights = None
    if CLASS_WEIGHTS[cfg.class_weights] is not None:
        weights = enet_weights(_class_pixel_counts(train_ds, range(n_train)), c=CLASS_WEIGHTS[cfg.class_weights]).to(device)
        cb.on_message(f"{cfg.class_weights} class weights: "
                      + ", ".join(f"{n} {w:.2f}" for n, w in zip(train_ds.info.class_names, weights.tolist())))
    train_set = Subset(train_ds, range(n_train))
    # Each rank validates its own slice, without the padding DistributedSampler would add
    # (padding would count some frames twice); the confusion matrices are then summed.
    val_set = Subset(val_ds, range(info.rank, n_val, info.world_size))
    sampler = DistributedSampler(train_set, info.world_size, info.rank, shuffle=True, seed=cfg.seed) if info.enabled else None
    # Workers start from a clean forkserver process, not by forking this one: a fork copies only
    # the calling thread, so a process that had started thread pools (OpenVINO's, say, in a
    # script that also runs inference) could hand a worker a lock held forever, and crash.
    context = "forkserver" if cfg.workers > 0 and "forkserver" in mp.get_all_start_methods() else None
    # drop_last keeps BatchNorm away from a batch of one at the end of an epoch.
    drop_last = math.ceil(len(train_set) / info.world_size) > cfg.batch_size
    if math.ceil(len(train_set) / info.world_size) < 2:
        raise RtsegError(f"{len(train_set)} training image(s) for {info.world_size} process(es): each needs at least 2")
    device_train = device_val = train_loader = None
    if cfg.data_on_device == "on" or (cfg.data_on_device == "auto" and device.startswith("cuda")):
        device_train, device_val = _hold_on_device(train_ds, n_train, val_ds, n_val, device, info, cb)
    else:
        train_loader = DataLoader(train_set, cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                                  num_workers=cfg.workers, drop_last=drop_last,
                                  persistent_workers=cfg.workers > 0, generator=g, multiprocessing_context=context,
                                  worker_init_fn=leave_stops_to_the_main_process)
    # Batch 1: frames of a folder data set may differ in size; on the CPU batching buys nothing.
    val_workers = min(cfg.workers, 1) if device_val is None else 0
    val_loader = DataLoader(val_set, 1, num_workers=val_workers, persistent_workers=val_workers > 0,
                            multiprocessing_context=context if val_workers else None,
                            worker_init_fn=leave_stops_to_the_main_process)
    return TrainData(train_ds, val_ds, aug, n_train, n_val, weights, drop_last, sampler, train_loader,
                 device_train, device_val, val_loader)


def leave_stops_to_the_main_process(worker_id: int) -> None:
    """A data worker ignores Ctrl-C, SIGTERM and SIGHUP: a terminal's Ctrl-C reaches the whole
    process group, and a worker that died of it would fail the step the main process is finishing
    before it saves (rtseg/train/stopping.py); the main process shuts the workers down itself."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)


def _class_pixel_counts(ds: SegDataset, indices: Iterable[int]) -> np.ndarray:
    """Labelled pixels per class over the given items (reads every label once)."""
    n = ds.info.num_classes
    counts = np.zeros(n, np.int64)
    for i in indices:
        _, label = ds.read(i)
        counts += np.bincount(label[label != IGNORE].ravel(), minlength=n)[:n]
    return counts


def _hold_on_device(train_ds: SegDataset, n_train: int, val_ds: SegDataset, n_val: int, device: str,
                    info: DistInfo, cb: TrainCallbacks) -> tuple[DeviceData, DeviceData | None]:
    """--data-on-device: the train split (and, in one process, the val split) decoded onto the device."""
    t_load = time.perf_counter()
    device_train, device_val = DeviceData(train_ds, range(n_train), device), None
    if not info.enabled:  # under DDP each rank validates its own shard through the DataLoader
        try:
            device_val = DeviceData(val_ds, range(n_val), device)
        except RtsegError:  # frames of several sizes: validated one by one through the DataLoader
            device_val = None
    held = device_train.nbytes + (device_val.nbytes if device_val is not None else 0)
    cb.on_message(f"data on {device}: {len(device_train)} train" + (f" + {len(device_val)} val" if device_val else "")
                  + f" frames, {held / 2**20:.0f} MiB as uint8, decoded in {time.perf_counter() - t_load:.1f} s")
    return device_train, device_val


def _one_line_batches(loader: DataLoader) -> Iterator:
    """Iterate a DataLoader; a dataset error raised in a worker process arrives wrapped in a
    traceback, so keep only its own message (the CLI prints one line)."""
    try:
        yield from loader
    except RtsegError as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else str(exc)
        raise RtsegError(last.split("RtsegError: ", 1)[-1]) from None
