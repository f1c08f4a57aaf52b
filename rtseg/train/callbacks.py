"""Where training progress goes: :class:`TrainCallbacks` (the CLI draws it; the defaults log)
and, optionally, TensorBoard scalars and a few prediction images."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from rtseg.meta import ModelMeta
from rtseg.train.data import SegDataset, to_tensor

__all__ = ["TrainCallbacks", "open_tensorboard", "log_predictions"]

log = logging.getLogger(__name__)


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


def open_tensorboard(logdir: Path, cb: TrainCallbacks) -> Any | None:
    """A TensorBoard ``SummaryWriter`` on ``logdir``, or None (and a message) when it is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        cb.on_message("TensorBoard logging is off: install it with pip install 'rtseg[train]' (or pass --no-tensorboard)")
        return None
    return SummaryWriter(str(logdir))


@torch.inference_mode()
def log_predictions(writer: Any, model: nn.Module, ds: SegDataset, meta: ModelMeta, device: str, epoch: int,
                    n: int = 3) -> None:
    """A few val frames: image | ground truth | prediction (ignored pixels black)."""
    from rtseg.viz import colorize

    model.eval()
    for i in range(min(n, len(ds))):
        img, label = ds.read(i)
        pred = model(to_tensor(img)[None].to(device)).argmax(1)[0].to(torch.uint8).cpu().numpy()
        row = np.concatenate([img, colorize(label, meta.palette), colorize(pred, meta.palette)], axis=1)
        writer.add_image(f"val/prediction_{i}", row[:, :, ::-1], epoch, dataformats="HWC")  # BGR -> RGB
