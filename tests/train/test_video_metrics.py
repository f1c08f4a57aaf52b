"""TC and flip rate: 1 and 0 for a still, steady clip; lower for flicker; motion alone costs little
(the flow compensates it); mIoU only where labels exist."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtseg.train.video_metrics import TemporalConsistency, video_metrics

H, W = 120, 160


def _texture(seed: int = 0) -> np.ndarray:
    t = cv2.GaussianBlur(np.random.default_rng(seed).random((H, W), dtype=np.float32), (0, 0), 2.0)
    return ((t - t.min()) / (t.max() - t.min()) * 200 + 30).astype(np.uint8)


def _labels() -> np.ndarray:
    ids = np.zeros((H, W), np.uint8)
    ids[:, W // 2:] = 1
    ids[40:80, 30:90] = 2
    return ids


def test_a_still_identical_clip_is_perfectly_consistent():
    frame, ids = _texture(), _labels()
    out = video_metrics([(frame, ids)] * 6)
    assert out["tc"] == pytest.approx(1.0) and out["flip_rate"] == 0.0
    assert out["frames"] == 6 and out["miou"] is None


def test_label_noise_lowers_tc_and_raises_flips():
    rng = np.random.default_rng(1)
    frame, ids = _texture(), _labels()
    noisy = []
    for _ in range(6):
        n = ids.copy()
        flip = rng.random(ids.shape) < 0.1
        n[flip] = rng.integers(0, 3, flip.sum())
        noisy.append((frame, n))
    out = video_metrics(noisy)
    assert out["tc"] < 0.95 and out["flip_rate"] > 0.03


def test_motion_is_compensated():
    """Frame and ids shifted together by 3 px a frame: nearly consistent (only the flow's errors)."""
    frame, ids = _texture(), _labels()
    clip = [(np.roll(frame, 3 * t, axis=1), np.roll(ids, 3 * t, axis=1)) for t in range(6)]
    out = video_metrics(clip)
    assert out["tc"] > 0.95 and out["flip_rate"] < 0.02
    still_ids = [(f, ids) for f, _ in clip]  # the masks stay put while the picture moves
    assert video_metrics(still_ids)["flip_rate"] > out["flip_rate"] + 0.01


def test_miou_where_labels_exist():
    frame, ids = _texture(), _labels()
    wrong = ids.copy()
    wrong[:, :10] = 1
    out = video_metrics([(frame, ids, ids), (frame, ids, None), (frame, wrong, ids)], num_classes=3)
    assert out["labelled"] == 2 and 0.8 < out["miou"] < 1.0
    with pytest.raises(ValueError, match="num_classes"):
        video_metrics([(frame, ids, ids)])


def test_one_frame_has_no_tc_and_bgr_frames_of_another_size_work():
    tc = TemporalConsistency()
    tc.update(np.zeros((H * 2, W * 2, 3), np.uint8), _labels())
    assert tc.compute() == {"tc": None, "flip_rate": None, "frames": 1}
    big = cv2.cvtColor(cv2.resize(_texture(), (W * 2, H * 2)), cv2.COLOR_GRAY2BGR)
    tc = TemporalConsistency()
    for _ in range(3):
        tc.update(big, _labels())
    assert tc.compute()["tc"] == pytest.approx(1.0)
