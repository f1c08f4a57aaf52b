"""Class ids made on the host from a network's low-resolution scores (rtseg.engines.host_ids) are
the ids a graph's own bilinear Resize and ArgMax make: PyTorch's interpolate + argmax at any
integer scale, on speckle and on maps with regions; a speckled map is given up within the budget.
The OpenVINO engine's use of it: test_openvino_host_ids.py."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rtseg.engines.host_ids import MAX_WORK, ids_from_scores


def _reference(scores: np.ndarray, scale: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's ids for ``scores`` (C, h, w) enlarged by ``scale``, and each pixel's margin between
    its best two classes (where a different order of float sums may pick the other)."""
    up = F.interpolate(torch.from_numpy(scores)[None], scale_factor=scale, mode="bilinear", align_corners=False)[0]
    top = up.topk(min(2, up.shape[0]), 0).values
    return up.argmax(0).numpy().astype(np.uint8), (top[0] - top[-1]).numpy()


def _regions(c: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Scores (C, h, w) with regions and edges, as a trained model's: smooth fields, one per class."""
    coarse = rng.normal(size=(c, max(2, h // 4), max(2, w // 4))).astype(np.float32)
    return F.interpolate(torch.from_numpy(coarse)[None], size=(h, w), mode="bilinear", align_corners=False)[0].numpy()


@pytest.mark.parametrize("c,h,w,scale", [(11, 45, 60, (8, 8)), (19, 48, 80, (8, 8)), (5, 7, 9, (3, 3)),
                                         (4, 6, 5, (2, 4)), (7, 10, 12, (5, 7)), (3, 1, 1, (8, 8)), (2, 4, 4, (1, 1))])
@pytest.mark.parametrize("kind", ["speckle", "regions"])
def test_the_ids_are_pytorchs_bilinear_argmax(c, h, w, scale, kind):
    rng = np.random.default_rng(c * 100 + h)
    scores = rng.normal(size=(c, h, w)).astype(np.float32) if kind == "speckle" else _regions(c, h, w, rng)
    ref, margin = _reference(scores, scale)
    ids = ids_from_scores(scores, scale)
    assert ids.shape == (h * scale[0], w * scale[1]) and ids.dtype == np.uint8
    differ = ids != ref
    assert not differ[margin > 1e-5].any()  # only where two classes tie to float rounding
    assert differ.mean() < 1e-4
    out = np.full(ids.shape, 99, np.uint8)
    assert ids_from_scores(scores.astype(np.float16), scale, out) is out and np.array_equal(out, ids_from_scores(
        scores.astype(np.float16).astype(np.float32), scale))  # fp16 scores (an engine's) are read as float32


def test_a_tie_goes_to_the_first_class_as_argmax_does():
    rng = np.random.default_rng(1)
    scores = _regions(4, 12, 16, rng)
    scores[3] = scores[1]  # class 3 ties with class 1 everywhere: ArgMax never picks it
    ids = ids_from_scores(scores, (8, 8))
    assert (ids == 1).any() and not (ids == 3).any()
    assert np.array_equal(ids, _reference(scores, (8, 8))[0])


def test_a_speckled_map_is_given_up_within_the_budget_and_a_smooth_one_is_not():
    rng = np.random.default_rng(2)
    out = np.full((96, 128), 7, np.uint8)
    assert ids_from_scores(rng.normal(size=(19, 12, 16)).astype(np.float32), (8, 8), out, max_work=MAX_WORK) is None
    assert (out == 7).all()  # untouched: the caller makes them another way
    smooth = _regions(19, 12, 16, rng)
    assert np.array_equal(ids_from_scores(smooth, (8, 8), out, max_work=MAX_WORK), _reference(smooth, (8, 8))[0])
