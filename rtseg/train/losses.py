"""Segmentation losses. Every loss takes logits (N, C, H, W) and int64 targets (N, H, W)
with ``ignore_index`` pixels left out, and returns a scalar."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rtseg.errors import RtsegError

__all__ = ["build_loss", "enet_weights", "LOSSES", "OhemCrossEntropy", "FocalLoss", "DiceLoss", "JaccardLoss",
           "CrossEntropyDice", "LovaszSoftmax", "CrossEntropyLovasz", "WithAux"]

LOSSES = ("ce", "ohem", "focal", "dice", "jaccard", "ce_dice", "lovasz", "ce_lovasz")


def enet_weights(pixel_counts: Sequence[int] | np.ndarray, c: float = 1.02) -> torch.Tensor:
    """ENet class weighting w = 1 / ln(c + p), p = the class's share of labelled pixels."""
    counts = torch.as_tensor(np.asarray(pixel_counts, dtype=np.float64))
    p = counts / counts.sum().clamp(min=1)
    return (1.0 / torch.log(c + p)).float()


def _probs_and_onehot(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    """Softmax probabilities and a one-hot target, both zeroed on ignored pixels."""
    valid = (target != ignore_index).unsqueeze(1)  # (N, 1, H, W)
    probs = logits.float().softmax(dim=1) * valid
    safe = torch.where(target == ignore_index, torch.zeros_like(target), target)
    onehot = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).float() * valid
    return probs, onehot


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hardest pixels: those with p(true class) < ``thresh``, and at
    least ``min_kept`` of them per batch."""

    def __init__(self, ignore_index: int = 255, thresh: float = 0.7, min_kept: int = 100_000, weight=None):
        super().__init__()
        self.ignore_index, self.min_kept = ignore_index, min_kept
        self.loss_thresh = -float(np.log(thresh))
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index, reduction="none").flatten()
        loss = loss[target.flatten() != self.ignore_index]
        if loss.numel() == 0:
            return logits.sum() * 0.0
        hard = loss[loss > self.loss_thresh]
        if hard.numel() < min(self.min_kept, loss.numel()):
            hard = loss.topk(min(self.min_kept, loss.numel())).values
        return hard.mean()


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_t)^gamma."""

    def __init__(self, ignore_index: int = 255, gamma: float = 2.0, weight=None):
        super().__init__()
        self.ignore_index, self.gamma = ignore_index, gamma
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        pt = torch.exp(-ce)
        loss = (1 - pt) ** self.gamma * ce
        if self.weight is not None:
            safe = torch.where(target == self.ignore_index, torch.zeros_like(target), target)
            loss = loss * self.weight[safe]
        valid = target != self.ignore_index
        return loss[valid].mean() if valid.any() else logits.sum() * 0.0


def _mean_present(score: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Mean of a per-class score over the classes present in the (non-ignored) target: a class
    absent from the batch would otherwise score ~1 for free and dilute the loss (as in
    segmentation_models_pytorch). Falls back to all classes when nothing is labelled."""
    present = onehot.sum(dim=(0, 2, 3)) > 0
    return score[present].mean() if present.any() else score.mean()


class DiceLoss(nn.Module):
    """1 - mean soft Dice (2|P.T| + s) / (|P| + |T| + s) over the classes present in the target;
    P = softmax probabilities, T = one-hot target, ignored pixels left out, s = ``smooth``."""

    def __init__(self, ignore_index: int = 255, smooth: float = 1.0):
        super().__init__()
        self.ignore_index, self.smooth = ignore_index, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs, onehot = _probs_and_onehot(logits, target, self.ignore_index)
        inter = (probs * onehot).sum(dim=(0, 2, 3))
        denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return 1 - _mean_present(dice, onehot)


class JaccardLoss(nn.Module):
    """1 - mean soft IoU (|P.T| + s) / (|P| + |T| - |P.T| + s) over the classes present in the target."""

    def __init__(self, ignore_index: int = 255, smooth: float = 1.0):
        super().__init__()
        self.ignore_index, self.smooth = ignore_index, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs, onehot = _probs_and_onehot(logits, target, self.ignore_index)
        inter = (probs * onehot).sum(dim=(0, 2, 3))
        union = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3)) - inter
        return 1 - _mean_present((inter + self.smooth) / (union + self.smooth), onehot)


class CrossEntropyDice(nn.Module):
    """Cross-entropy + ``dice_weight`` x Dice loss."""

    def __init__(self, ignore_index: int = 255, weight=None, dice_weight: float = 1.0):
        super().__init__()
        self.ce = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
        self.dice = DiceLoss(ignore_index)
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target) + self.dice_weight * self.dice(logits, target)


def _lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. errors sorted descending."""
    gts = fg_sorted.sum()
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


class LovaszSoftmax(nn.Module):
    """Lovasz-softmax (Berman et al., CVPR 2018): a convex surrogate of 1 - IoU for each class,
    averaged over the classes present in the batch. Unlike soft IoU it is tight at the hard
    decision, which is why it is used to fine-tune a network trained with cross-entropy for
    mIoU.

    It costs one sort of the batch's pixels per present class, on a CPU more than the network's
    own step; ``stride`` scores every stride-th pixel in each direction instead. Fast-SCNN's
    logits are bilinear enlargements of a 1/8-resolution map, so a stride of 2 loses next to
    nothing of them."""

    def __init__(self, ignore_index: int = 255, stride: int = 1):
        super().__init__()
        self.ignore_index, self.stride = ignore_index, stride

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            logits, target = logits[:, :, ::self.stride, ::self.stride], target[:, ::self.stride, ::self.stride]
        c = logits.shape[1]
        probs = logits.float().softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, c)  # (pixels, C)
        labels = target.reshape(-1)
        valid = labels != self.ignore_index
        probs, labels = probs[valid], labels[valid]
        if labels.numel() == 0:
            return logits.sum() * 0.0
        losses = []
        for k in labels.unique().tolist():
            fg = (labels == k).float()
            errors, order = (fg - probs[:, k]).abs().sort(descending=True)
            losses.append(torch.dot(errors, _lovasz_grad(fg[order])))
        return torch.stack(losses).mean()


class CrossEntropyLovasz(nn.Module):
    """Cross-entropy + ``lovasz_weight`` x Lovasz-softmax (on every 2nd pixel each way)."""

    def __init__(self, ignore_index: int = 255, weight=None, lovasz_weight: float = 1.0, stride: int = 2):
        super().__init__()
        self.ce = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
        self.lovasz = LovaszSoftmax(ignore_index, stride)
        self.lovasz_weight = lovasz_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target) + self.lovasz_weight * self.lovasz(logits, target)


class WithAux(nn.Module):
    """Main loss plus the same loss on each auxiliary output, weighted: ``aux_weight`` is one
    weight for every head (Fast-SCNN's paper: 0.4) or one per head, in the network's order
    (a network's ``aux_weights``: its paper's)."""

    def __init__(self, loss: nn.Module, aux_weight: float | Sequence[float] = 0.4):
        super().__init__()
        self.loss, self.aux_weight = loss, aux_weight

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, tuple):
            main, aux = outputs
            weights = self.aux_weight if isinstance(self.aux_weight, Sequence) else [self.aux_weight] * len(aux)
            if len(weights) != len(aux):
                raise ValueError(f"{len(aux)} auxiliary outputs but {len(weights)} weights")
            return self.loss(main, target) + sum(w * self.loss(a, target) for w, a in zip(weights, aux))
        return self.loss(outputs, target)


def build_loss(name: str, *, ignore_index: int = 255, class_weights: torch.Tensor | None = None,
               aux_weight: float | Sequence[float] = 0.4) -> nn.Module:
    """A loss by name (one of ``LOSSES``), wrapped to handle auxiliary outputs."""
    if name == "ce":
        loss = nn.CrossEntropyLoss(weight=class_weights, ignore_index=ignore_index)
    elif name == "ohem":
        loss = OhemCrossEntropy(ignore_index, weight=class_weights)
    elif name == "focal":
        loss = FocalLoss(ignore_index, weight=class_weights)
    elif name == "dice":
        loss = DiceLoss(ignore_index)
    elif name == "jaccard":
        loss = JaccardLoss(ignore_index)
    elif name == "ce_dice":
        loss = CrossEntropyDice(ignore_index, weight=class_weights)
    elif name == "lovasz":
        loss = LovaszSoftmax(ignore_index, stride=2)
    elif name == "ce_lovasz":
        loss = CrossEntropyLovasz(ignore_index, weight=class_weights)
    else:
        raise RtsegError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return WithAux(loss, aux_weight)
