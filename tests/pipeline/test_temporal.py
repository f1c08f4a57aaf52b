"""The temporal filter: flicker over a still scene goes, a moving object's mask follows it (no
trail), reset forgets, and on the real CamVid clip the masks hold stiller (TC rises)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.pipeline.temporal import TemporalConfig, TemporalFilter, softmax, upsample_argmax

H, W, STRIDE = 240, 320, 8
ROOT = Path(__file__).resolve().parents[2]


def texture(rng, h, w, lo=40, hi=215, blur=3.0) -> np.ndarray:
    """A smooth random BGR texture (what DIS needs to find motion)."""
    t = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), blur)
    t = (t - t.min()) / (t.max() - t.min())
    return np.repeat((lo + (hi - lo) * t).astype(np.uint8)[..., None], 3, axis=2)


def noisy_scores(labels: np.ndarray, classes: int, rng, scale: float, noise: float) -> np.ndarray:
    """Logits (C, H/8, W/8): ``scale`` on each pixel's true class (area fraction), plus noise."""
    h, w = labels.shape[0] // STRIDE, labels.shape[1] // STRIDE
    onehot = np.stack([cv2.resize((labels == c).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
                       for c in range(classes)])
    return (scale * onehot + rng.normal(0, noise, onehot.shape)).astype(np.float32)


def plain(scores: np.ndarray) -> np.ndarray:
    """The frame's ids without any filter, at the inference size."""
    return upsample_argmax(softmax(scores.transpose(1, 2, 0)), (H, W))


def flips(ids: list[np.ndarray]) -> float:
    return float(np.mean([np.mean(a != b) for a, b in zip(ids, ids[1:])]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def still_scene(n=30, seed=0):
    rng = np.random.default_rng(seed)
    frame = texture(rng, H, W)
    labels = np.zeros((H, W), np.uint8)
    labels[:, W // 2:] = 1
    labels[H // 3: 2 * H // 3, W // 4: 3 * W // 4] = 2
    return labels, [(frame, noisy_scores(labels, 3, rng, 2.0, 1.0)) for _ in range(n)]


def moving_box(n=25, seed=1, step=6):
    """A textured 64x80 box moving ``step`` px a frame to the right over a textured background."""
    rng = np.random.default_rng(seed)
    background, box = texture(rng, H, W, 20, 120), texture(rng, 64, 80, 140, 250, 2.0)
    seq = []
    for t in range(n):
        x0 = 40 + step * t
        frame = background.copy()
        frame[90:154, x0:x0 + 80] = box
        labels = np.zeros((H, W), np.uint8)
        labels[90:154, x0:x0 + 80] = 1
        seq.append((frame, noisy_scores(labels, 2, rng, 3.0, 0.7), labels))
    return seq


def test_label_noise_over_a_still_scene_is_removed():
    labels, seq = still_scene()
    raw = [plain(s) for _, s in seq]
    filt = TemporalFilter()
    out = [filt(f, s) for f, s in seq]
    assert flips(raw) > 0.05  # the noise does make the plain masks flicker
    assert flips(out) < 0.3 * flips(raw)
    accuracy = np.mean([np.mean(o == labels) for o in out[5:]])
    assert accuracy > np.mean([np.mean(r == labels) for r in raw[5:]])


def test_a_moving_objects_mask_follows_it_without_a_trail():
    seq = moving_box()
    filt = TemporalFilter()
    for t, (frame, scores, labels) in enumerate(seq):
        ids = filt(frame, scores)
        truth = labels == 1
        assert iou(ids == 1, truth) > 0.85, f"frame {t}"
        behind = np.zeros_like(truth)
        behind[90:154, :40 + 6 * t] = True  # where the box was, not where it is
        assert np.mean((ids == 1)[behind]) < 0.1, f"trail at frame {t}"


def test_nothing_before_the_first_frame_and_reset_forgets():
    labels, seq = still_scene(n=6)
    filt = TemporalFilter()
    assert not filt.primed
    first = filt(*seq[0])
    assert filt.primed
    for frame, scores in seq[1:]:
        filt(frame, scores)
    filt.reset()
    assert not filt.primed
    assert np.array_equal(filt(*seq[0]), first)  # as if nothing had been seen


def test_a_gap_in_the_index_or_a_step_back_resets():
    _, seq = still_scene(n=4)
    fresh = TemporalFilter()(*seq[3])
    for jump in (10, -1):
        filt = TemporalFilter(TemporalConfig(max_gap=3))
        for i, (frame, scores) in enumerate(seq[:3]):
            filt(frame, scores, index=i)
        assert np.array_equal(filt(*seq[3], index=2 + jump), fresh)


def test_a_new_frame_size_resets_and_size_sets_the_output():
    _, seq = still_scene(n=2)
    filt = TemporalFilter()
    filt(*seq[0])
    small = cv2.resize(seq[1][0], (W // 2, H // 2))
    ids = filt(small, seq[1][1][:, ::2, ::2].copy(), size=(H // 2, W // 2))
    assert ids.shape == (H // 2, W // 2) and ids.dtype == np.uint8


def test_memory_zero_is_the_frame_itself():
    _, seq = still_scene(n=3)
    filt = TemporalFilter(TemporalConfig(memory=0.0))
    for frame, scores in seq:
        expected = upsample_argmax(-np.log(np.maximum(softmax(scores.transpose(1, 2, 0)), 1e-12)), (H, W), smallest=True)
        assert np.array_equal(filt(frame, scores), expected)


def test_upsample_argmax_is_argmax_of_the_resized_scores():
    rng = np.random.default_rng(3)
    values = rng.random((9, 12, 11), dtype=np.float32)
    up = cv2.resize(values, (96, 72), interpolation=cv2.INTER_LINEAR)
    assert np.mean(upsample_argmax(values, (72, 96)) == up.argmax(-1)) > 0.999  # ties in the low bits aside
    assert np.mean(upsample_argmax(values, (72, 96), smallest=True) == up.argmin(-1)) > 0.999


@pytest.mark.parametrize("kw", [dict(memory=1.0), dict(memory=-0.1), dict(match_error=0), dict(flow_preset="slow"),
                                dict(max_gap=0), dict(confidence=2.0)])
def test_bad_config_is_refused(kw):
    with pytest.raises(RtsegError):
        TemporalConfig(**kw)


def _benchmark():
    spec = importlib.util.spec_from_file_location("temporal_benchmark", ROOT / "benchmarks" / "temporal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tc_rises_on_the_real_clip():
    """The shipped weights over the first 30 frames of the bundled CamVid clip: TC with the filter
    above TC without (figures for the whole clip: benchmarks/results/temporal.json)."""
    bench = _benchmark()
    if not bench.DEMO_CLIP.is_file() or not bench.DEFAULT_WEIGHTS.is_file():
        pytest.skip("the bundled clip or weights are missing")
    from rtseg.formats.checkpoint import build_from_checkpoint

    net, meta = build_from_checkpoint(bench.DEFAULT_WEIGHTS)
    row = bench.run_clip(bench.DEMO_CLIP, bench.ScoresNet(net, meta.mean, meta.std), tuple(meta.input_size),
                         meta.num_classes, None, TemporalConfig(), 30)
    assert row["frames"] == 30
    assert row["on"]["tc"] > row["off"]["tc"] + 0.01
    assert row["on"]["flip_rate"] < row["off"]["flip_rate"]


def test_many_classes_work():
    """ADE20K's 150 classes: more channels than OpenCV 5 remaps or resizes in one call."""
    rng = np.random.default_rng(3)
    frame = texture(rng, H, W)
    filt = TemporalFilter()
    for _ in range(3):
        ids = filt(frame, rng.normal(0, 1, (150, H // STRIDE, W // STRIDE)).astype(np.float32), size=(H, W))
    assert ids.shape == (H, W) and ids.max() < 150 and filt.primed
