"""Segmentation metrics from one confusion matrix: pixel accuracy, per-class IoU, mIoU, Dice."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """Accumulates a (C, C) matrix, rows = ground truth, columns = prediction. Pixels whose
    target is the ignore label (or outside 0..C-1) are left out."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        pred = torch.as_tensor(pred).reshape(-1).to(torch.int64)
        target = torch.as_tensor(target).reshape(-1).to(torch.int64)
        n = self.num_classes
        keep = (target >= 0) & (target < n) & (target != self.ignore_index)
        idx = n * target[keep] + pred[keep].clamp_(0, n - 1)
        self.mat += torch.bincount(idx, minlength=n * n).reshape(n, n).cpu()

    def reset(self) -> None:
        self.mat.zero_()

    def compute(self, class_names: Sequence[str] | None = None) -> dict:
        """Fractions in 0..1. A class absent from both prediction and ground truth has IoU and
        Dice NaN and is left out of the means."""
        m = self.mat.double()
        tp = m.diag()
        gt = m.sum(1)
        pr = m.sum(0)
        union = gt + pr - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        dice = torch.where(gt + pr > 0, 2 * tp / (gt + pr).clamp(min=1), torch.full_like(tp, float("nan")))
        total = m.sum()
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        return {
            "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
            "miou": float(np.nanmean(iou.numpy())) if torch.any(~iou.isnan()) else float("nan"),
            "mean_dice": float(np.nanmean(dice.numpy())) if torch.any(~dice.isnan()) else float("nan"),
            "per_class_iou": {name: float(v) for name, v in zip(names, iou.tolist())},
            "per_class_dice": {name: float(v) for name, v in zip(names, dice.tolist())},
        }
