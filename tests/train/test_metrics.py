"""ConfusionMatrix against hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rtseg.train.metrics import ConfusionMatrix

# 3 classes; the last pixel is ignored (255) and must not count.
TARGET = torch.tensor([0, 0, 1, 1, 2, 255])
PRED = torch.tensor([0, 1, 1, 1, 0, 2])
# By hand, over the 5 counted pixels: rows = truth, columns = prediction
#   gt 0: pred 0 x1, pred 1 x1;  gt 1: pred 1 x2;  gt 2: pred 0 x1
# tp = [1, 2, 0], |gt| = [2, 2, 1], |pred| = [2, 3, 0]
# IoU = tp / (gt + pred - tp) = [1/3, 2/3, 0];  Dice = 2 tp / (gt + pred) = [1/2, 4/5, 0]


def test_matrix_and_metrics_by_hand():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    assert cm.mat.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    m = cm.compute(["a", "b", "c"])
    assert m["pixel_acc"] == pytest.approx(3 / 5)
    assert m["per_class_iou"] == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 0.0})
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert m["per_class_dice"] == pytest.approx({"a": 1 / 2, "b": 4 / 5, "c": 0.0})
    assert m["mean_dice"] == pytest.approx((1 / 2 + 4 / 5 + 0) / 3)


def test_ignore_is_excluded_whatever_is_predicted_there():
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(PRED, TARGET)
    b.update(torch.tensor([0, 1, 1, 1, 0, 0]), TARGET)  # differs only on the ignored pixel
    assert torch.equal(a.mat, b.mat) and int(a.mat.sum()) == 5


def test_absent_class_is_nan_and_left_out_of_the_means():
    cm = ConfusionMatrix(4)  # class 3 is in neither truth nor prediction
    cm.update(PRED, TARGET)
    m = cm.compute()
    assert math.isnan(m["per_class_iou"]["3"]) and math.isnan(m["per_class_dice"]["3"])
    assert m["miou"] == pytest.approx(1 / 3)
    assert m["mean_dice"] == pytest.approx((1 / 2 + 4 / 5) / 3)


def test_class_predicted_but_absent_from_truth_counts_as_zero():
    cm = ConfusionMatrix(2)
    cm.update(np.array([[0, 1], [0, 0]]), np.array([[0, 0], [0, 0]]))  # numpy works too
    m = cm.compute()
    assert m["per_class_iou"] == {"0": pytest.approx(3 / 4), "1": 0.0}
    assert m["miou"] == pytest.approx(3 / 8)
    assert m["pixel_acc"] == pytest.approx(3 / 4)


def test_updates_accumulate_and_reset():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    cm.update(PRED, TARGET)
    assert int(cm.mat.sum()) == 10 and cm.compute()["pixel_acc"] == pytest.approx(3 / 5)
    cm.reset()
    assert int(cm.mat.sum()) == 0 and math.isnan(cm.compute()["pixel_acc"])
