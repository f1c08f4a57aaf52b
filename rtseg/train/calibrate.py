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

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from rtseg.formats.checkpoint import load_checkpoint, save_checkpoint
from rtseg.errors import RtsegError
from rtseg.train.config import jsonable
from rtseg.train.data import IGNORE
from rtseg.train.dist import DistInfo, all_reduce_sum
from rtseg.train.evaluate import at_size, evaluate_model, to_label_size
from rtseg.train.metrics import ConfusionMatrix

__all__ = ["TAUS", "tune_logit_offset", "fold_logit_offset", "final_conv", "calibrate_best"]

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


def calibrate_best(out: Path, model: nn.Module, val_loader: DataLoader, weights: torch.Tensor | None, device: str,
                   info: DistInfo, class_names: list[str], *, size: tuple[int, int] | None,
                   say: Callable[[str], None]) -> dict | None:
    """``--calibrate``: tune on the validation split the logit offset that undoes the class
    weights, and fold it into ``out/best.pt``; the file as trained stays beside it as
    best_uncalibrated.pt. Returns what was done, or None when there was nothing to do (no
    weights, no best.pt, already calibrated, or no offset beat none). ``say`` gets each message."""
    best = out / "best.pt"
    if weights is None:
        say("--calibrate: there are no class weights to undo (it applies to --class-weights enet and espnet)")
        return None
    if not best.is_file():
        say(f"--calibrate: {best} does not exist yet")
        return None
    state = load_checkpoint(best, map_location=device)
    meta = state["meta"]
    if "calibration" in meta.extra:
        say(f"--calibrate: {best} is calibrated already (tau {meta.extra['calibration']['tau']:g}); left as is")
        return None
    net = getattr(model, "module", model)
    net.load_state_dict(state["state_dict"])
    log_w = weights.log()
    scores = tune_logit_offset(net, val_loader, log_w, len(class_names), device, size=size, info=info)
    tau = max(scores, key=scores.get)  # the first (smallest) tau on a tie
    say("logit offset on val: " + ", ".join(f"tau {t:g} mIoU {m:.4f}" for t, m in scores.items()))
    if tau == 0:
        say("--calibrate: no offset beats none; best.pt left as is")
        return None
    fold_logit_offset(net, log_w, tau)
    metrics = evaluate_model(net, val_loader, len(class_names), device, info, size=size).compute(class_names)
    done = {"tau": tau, "val_miou_before": scores[0.0], "val_miou_after": metrics["miou"],
            "offsets": (-tau * log_w).tolist()}
    if info.is_main:
        shutil.copy2(best, out / "best_uncalibrated.pt")
        calibrated = replace(meta, extra={**meta.extra, "val": jsonable(metrics), "calibration": done})
        save_checkpoint(best, net, calibrated, **state["train"])
    say(f"--calibrate: tau {tau:g} folded into {best}: val mIoU {done['val_miou_before']:.4f} -> "
        f"{done['val_miou_after']:.4f} (as trained: best_uncalibrated.pt)")
    return done
