"""Undo what class weights do to the decision: a per-class logit offset, tuned on validation.

Cross-entropy with class weights ``w`` pulls the network towards posteriors scaled by ``w``, so
a rare class wins pixels it merely might own. On CamVid val the ENet-weighted network called
Pedestrian on pixels that were Building half the time. Subtracting ``tau * log(w)`` from the
logits moves the decision back (logit adjustment, Menon et al., ICLR 2021): ``tau = 1`` undoes
the weighting fully, ``tau = 0`` leaves it. The weighting still did its work during training
(rare classes got gradient); only the final decision moves.

The offset is a constant per class, and bilinear upsampling of logits commutes with adding a
constant, so it folds into the bias of the classifier's last 1x1 conv: no cost at run time,
and every export (ONNX, TensorRT) carries it.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from rtseg.errors import RtsegError
from rtseg.train.data import IGNORE
from rtseg.train.dist import DistInfo, all_reduce_sum
from rtseg.train.evaluate import at_size, to_label_size
from rtseg.train.metrics import ConfusionMatrix

__all__ = ["TAUS", "tune_logit_offset", "fold_logit_offset", "final_conv"]

TAUS = tuple(i / 8 for i in range(9))  # 0, 0.125, ..., 1: the strengths tried


def final_conv(model: nn.Module) -> nn.Conv2d:
    """The classifier's last layer: a 1x1 conv with a bias (where the offset goes)."""
    net = getattr(model, "module", model)
    head = getattr(net, "classifier", None)
    last = head[-1] if isinstance(head, nn.Sequential) and len(head) else head
    if not isinstance(last, nn.Conv2d) or last.bias is None or last.kernel_size != (1, 1):
        raise RtsegError(f"--calibrate needs a network whose classifier ends in a 1x1 conv with a bias; "
                         f"{type(net).__name__} has none")
    return last


@torch.inference_mode()
def tune_logit_offset(model: nn.Module, loader: DataLoader, log_w: torch.Tensor, num_classes: int, device: str,
                      *, size: tuple[int, int] | None = None, taus: Sequence[float] = TAUS,
                      info: DistInfo = DistInfo()) -> dict[float, float]:
    """Validation mIoU for each ``tau`` with ``tau * log_w`` subtracted from the logits: one
    network pass per frame, every ``tau`` scored from it. Frames are resized to ``size`` (if
    given) and the ids brought back to the label's size, as ``evaluate_model`` does."""
    model.eval()
    log_w = log_w.to(device).view(1, -1, 1, 1)
    cms = {t: ConfusionMatrix(num_classes, IGNORE) for t in taus}
    for images, labels in loader:
        logits = model(at_size(images.to(device, memory_format=torch.channels_last), size))
        for t in taus:
            cms[t].update(to_label_size((logits - t * log_w).argmax(1), labels).cpu(), labels)
    scores = {}
    for t, cm in cms.items():
        all_reduce_sum(cm.mat, info)
        scores[t] = cm.compute()["miou"]
    return scores


@torch.no_grad()
def fold_logit_offset(model: nn.Module, log_w: torch.Tensor, tau: float) -> None:
    """Subtract ``tau * log_w`` from the classifier's bias, in place."""
    bias = final_conv(model).bias
    bias.sub_(tau * log_w.to(bias.device, bias.dtype))
