"""What ``rtseg train`` is asked to do: :class:`TrainConfig`, every option with its default,
validated once, and the configuration a ``last.pt`` was trained with, for ``--resume``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rtseg.formats.checkpoint import load_checkpoint
from rtseg.errors import RtsegError
from rtseg.nets import list_models
from rtseg.nets.registry import model_options
from rtseg.train.losses import LOSSES
from rtseg.train.optim import AMP_MODES

__all__ = ["TrainConfig", "CLASS_WEIGHTS", "jsonable"]

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

    def to_json(self) -> dict[str, Any]:
        """Every field, tuples as lists: what a checkpoint records as ``meta.extra["train_config"]``."""
        return jsonable(asdict(self))

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


def jsonable(d: dict) -> dict:
    """``d`` with its tuple values as lists (what JSON and a checkpoint's metadata hold)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
