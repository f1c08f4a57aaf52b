"""Evaluation: a confusion matrix of a network or any engine over a dataset split.

``evaluate_model`` is what the training loop validates with (a torch module over a
DataLoader, summed over ranks under DDP); ``evaluate`` is ``rtseg eval``: any artifact, frame
by frame, each at its own size unless a size is given.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from rtseg.engines import artifact_family, open_engine
from rtseg.errors import RtsegError
from rtseg.formats.checkpoint import build_from_checkpoint, load_checkpoint
from rtseg.meta import ModelMeta
from rtseg.train.data import IGNORE, DatasetInfo, SegDataset
from rtseg.train.dist import DistInfo, all_reduce_sum
from rtseg.train.metrics import ConfusionMatrix

__all__ = ["evaluate_model", "at_size", "to_label_size", "Predictor", "load_predictor", "check_classes", "evaluate",
           "eval_report"]

log = logging.getLogger(__name__)


@torch.inference_mode()
def evaluate_model(model: nn.Module, loader: DataLoader, num_classes: int, device: str,
                   info: DistInfo = DistInfo(), size: tuple[int, int] | None = None) -> ConfusionMatrix:
    """Confusion matrix of ``model`` (normalised float input, logits out) over ``loader``,
    summed over every rank under DDP (each rank evaluates its own shard). With ``size``, images
    are resized to it and the ids brought back to the label's size by nearest neighbour (pixel
    centres aligned, as the engines do at run time)."""
    model.eval()
    cm = ConfusionMatrix(num_classes, IGNORE)
    for images, labels in loader:
        pred = model(at_size(images.to(device, memory_format=torch.channels_last), size)).argmax(1)
        cm.update(to_label_size(pred, labels).cpu(), labels)
    all_reduce_sum(cm.mat, info)
    return cm


def at_size(images: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Normalised float images (N, 3, H, W) resized to ``size`` (bilinear), or as they are."""
    if size is None or tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def to_label_size(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class ids (N, h, w) brought to the labels' size by nearest neighbour, pixel centres aligned."""
    if pred.shape[-2:] == labels.shape[-2:]:
        return pred
    return F.interpolate(pred[:, None].float(), size=labels.shape[-2:], mode="nearest-exact")[:, 0].long()


class Predictor:
    """BGR uint8 frame (H, W, 3) -> uint8 class ids (H, W), with the artifact's metadata.
    ``size`` is the inference size, or None when every frame runs at its own size."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], meta: ModelMeta, size: tuple[int, int] | None,
                 description: str):
        self.fn, self.meta, self.size, self.description = fn, meta, size, description

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.fn(frame)


def _native_torch(path: Path, device: str) -> Predictor:
    """A PyTorch checkpoint run at each frame's own size (Fast-SCNN takes any size)."""
    from rtseg.nets.deploy import DeployModel

    net, meta = build_from_checkpoint(path, map_location=device)
    model = DeployModel(net, meta).to(device).eval()

    @torch.inference_mode()
    def run(frame: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frame)[None].to(device)
        return model(x)[0].cpu().numpy()

    return Predictor(run, meta, None, f"pytorch on {device}, {meta.model} at each frame's own size")


def load_predictor(path: str | Path, *, device: str = "cpu", size: tuple[int, int] | None = None,
                   runtime: str | None = None, note: Callable[[str], None] | None = None,
                   data: DatasetInfo | None = None, precision: str = "auto",
                   **foreign: str | bool | None) -> Predictor:
    """Any artifact as a :class:`Predictor`. A PyTorch checkpoint without ``size`` runs at the
    size its training validated at (``--val-size``), so eval reproduces the figure training
    reported, or else (on PyTorch) each frame at its own size. Otherwise
    :func:`rtseg.engines.open_engine` opens it (at ``size``, else the artifact's own size) and
    frames are resized to it and the ids back. ``runtime``: as for ``open_engine`` (None: the
    artifact's own kind of runtime; ``auto``: the fastest here, a ``.pt`` exported once into the
    cache). ``precision``: as for ``open_engine``. ``data``: the dataset it will be evaluated on; a checkpoint's classes are checked
    against it (:func:`check_classes`) before anything is exported. ``foreign``: ``classes``,
    ``normalize``, ... for an ONNX file without rtseg metadata (wrapped once into the cache)."""
    from rtseg.engines.foreign_cache import foreign_or_own

    path = Path(path)
    if not path.is_file():
        raise RtsegError(f"weights/engine file not found: {path}")
    path = foreign_or_own(path, foreign, note=note or log.warning)  # an error for flags on rtseg's own
    if artifact_family(path) == "pytorch":
        meta = load_checkpoint(path)["meta"]
        if data is not None:
            check_classes(meta, data)
        if size is None:
            val_size = meta.extra.get("train_config", {}).get("val_size")
            if val_size:
                size = tuple(val_size)
            elif runtime in (None, "pytorch") and precision in ("auto", "fp32"):
                return _native_torch(path, device)
            else:
                size = tuple(meta.input_size)  # an export has one size: the checkpoint's
    engine = open_engine(path, device=device, size=size, runtime=runtime, note=note, precision=precision)
    h, w = engine.input_size
    return Predictor(engine.predict, engine.meta, (h, w), f"{engine.name} on {engine.device}, {engine.meta.model} at {h}x{w}")


def check_classes(meta: ModelMeta, data: DatasetInfo) -> None:
    """A one-line error unless the model predicts as many classes as the dataset labels."""
    if meta.num_classes != data.num_classes:
        raise RtsegError(f"the model has {meta.num_classes} classes ({meta.dataset}) but the dataset "
                         f"{data.name} has {data.num_classes}; evaluate it on data with the same classes")


def evaluate(predictor: Predictor, dataset: SegDataset, *, limit: int = 0,
             on_frame: Callable[[int, int], None] | None = None) -> ConfusionMatrix:
    """Run ``predictor`` over the first ``limit`` frames of ``dataset`` (0 = all); ``on_frame(i, n)``
    after each. The dataset's class count must be the model's."""
    check_classes(predictor.meta, dataset.info)
    n = min(limit, len(dataset)) if limit else len(dataset)
    cm = ConfusionMatrix(predictor.meta.num_classes, IGNORE)
    for i in range(n):
        img, label = dataset.read(i)
        ids = predictor(img)
        if ids.shape != label.shape:
            raise RtsegError(f"the predictor returned {ids.shape} ids for a {label.shape} label ({dataset.pairs[i][0].name})")
        cm.update(torch.from_numpy(ids), torch.from_numpy(label))
        if on_frame is not None:
            on_frame(i + 1, n)
    return cm


def _finite(v: float) -> float | None:
    """JSON has no NaN: a class absent from both labels and predictions is null."""
    return None if math.isnan(v) else v


def eval_report(cm: ConfusionMatrix, class_names, *, dataset: str, split: str, frames: int) -> dict:
    """The ``rtseg eval --json`` document, exactly the fields docs/architecture.md lists
    (fractions in 0..1, ignore excluded; NaN -> null)."""
    m = cm.compute(class_names)
    return {
        "dataset": dataset,
        "split": split,
        "frames": frames,
        "miou": _finite(m["miou"]),
        "pixel_acc": _finite(m["pixel_acc"]),
        "mean_dice": _finite(m["mean_dice"]),
        "per_class_iou": {k: _finite(v) for k, v in m["per_class_iou"].items()},
    }
