"""Joint augmentation keeps image and label aligned: the images here are coloured by class
(pure red / green / blue), so after any scale, crop, pad, flip and jitter the colour of every
clean pixel must still name its label, and padded pixels must be ignored."""
from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from rtseg.train.transforms import AugmentConfig, augment

IGNORE = 255
COLORS_BGR = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0]], np.uint8)  # class 0 red, 1 green, 2 blue


def _blocky_pair(rng: np.random.Generator, h: int = 90, w: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric blocks of 3 classes (a flip or shift of one but not the other would show)."""
    label = cv2.resize(rng.integers(0, 3, (6, 8), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return COLORS_BGR[label], label


def _decode(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class from colour (the dominant channel: B -> 2, G -> 1, R -> 0), and where that is clear:
    a pixel more than 3/4 one colour. Bilinear blends at block corners are not clear (three
    neighbours of one class can outweigh the nearest pixel, which the label rightly takes)."""
    x = img.astype(np.int16)
    top2 = np.sort(x, axis=2)[:, :, -2:]
    clear = (top2[:, :, 1] >= 200) & (top2[:, :, 0] <= 55)
    return 2 - x.argmax(axis=2), clear


def test_colour_still_names_the_label_everywhere():
    rng = np.random.default_rng(0)
    random.seed(0)
    cfg = AugmentConfig(scale=(0.5, 2.0), crop=(96, 128), jitter=0.0, ignore_index=IGNORE)
    padded_seen = flipped_or_scaled = 0
    for _ in range(40):
        img, label = _blocky_pair(rng)
        out_img, out_label = augment(img, label, cfg)
        assert out_img.shape == (96, 128, 3) and out_label.shape == (96, 128)
        assert out_img.dtype == np.uint8 and out_label.dtype == np.uint8
        assert set(np.unique(out_label)) <= {0, 1, 2, IGNORE}  # nearest neighbour: no invented ids
        cls, clear = _decode(out_img)
        labelled = out_label != IGNORE
        assert (cls[clear & labelled] == out_label[clear & labelled]).all()
        assert clear[labelled].mean() > 0.8  # most pixels are checked, not just a few
        padded = ~labelled  # padding is black in the image and ignored in the label, exactly
        assert np.array_equal(padded, (out_img == 0).all(axis=2))
        padded_seen += padded.any()
        flipped_or_scaled += not np.array_equal(out_label, label[:96, :128])
    assert padded_seen > 5 and flipped_or_scaled > 30  # the random cases were really exercised


def test_colour_jitter_changes_colours_not_geometry():
    img, label = _blocky_pair(np.random.default_rng(4))
    cfg = AugmentConfig(scale=(0.5, 2.0), crop=(96, 128), jitter=0.0)
    for seed in range(10):
        random.seed(seed)
        plain_img, plain_label = augment(img, label, cfg)
        random.seed(seed)  # the same scale, crop and flip; jitter draws last
        jit_img, jit_label = augment(img, label, AugmentConfig(scale=(0.5, 2.0), crop=(96, 128), jitter=0.4))
        assert np.array_equal(plain_label, jit_label)
        cls, clear = _decode(plain_img)
        assert (2 - jit_img.astype(np.int16).argmax(axis=2))[clear].tolist() == cls[clear].tolist()
        assert not np.array_equal(plain_img, jit_img)


def test_a_misaligned_label_would_be_caught():
    """The check above can fail: flipping only the image breaks it."""
    img, label = _blocky_pair(np.random.default_rng(1))
    cls, clear = _decode(img[:, ::-1])
    assert (cls[clear] != label[clear]).mean() > 0.2


def test_no_scale_no_flip_no_jitter_is_a_plain_crop():
    img, label = _blocky_pair(np.random.default_rng(2))
    random.seed(3)
    out_img, out_label = augment(img, label, AugmentConfig(scale=(1.0, 1.0), crop=(90, 120), flip=False, jitter=0))
    assert np.array_equal(out_img, img) and np.array_equal(out_label, label)
