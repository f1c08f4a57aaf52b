"""Joint augmentation of an image and its label: what moves the image moves the label.

Images are resized bilinearly, labels with nearest neighbour; padding fills labels with the
ignore id so padded pixels never count. Randomness comes from ``random`` (seeded per
DataLoader worker by PyTorch).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["AugmentConfig", "augment", "color_jitter"]


@dataclass(frozen=True)
class AugmentConfig:
    scale: tuple[float, float] = (0.5, 2.0)  # random resize factor range (paper: 0.5-2.0)
    crop: tuple[int, int] = (360, 480)  # (h, w) of the training crop, padded when the image is smaller
    flip: bool = True  # horizontal flip with probability 0.5
    jitter: float = 0.3  # max relative change of brightness, contrast and saturation; 0 = off
    ignore_index: int = 255


def color_jitter(img: np.ndarray, strength: float) -> np.ndarray:
    """Random brightness, contrast and saturation, each in [1 - strength, 1 + strength]."""
    b, c, s = (random.uniform(1 - strength, 1 + strength) for _ in range(3))
    x = img.astype(np.float32)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * s  # saturation
    x = (x - x.mean()) * c + x.mean()  # contrast
    x *= b  # brightness
    return np.clip(x, 0, 255).astype(np.uint8)


def augment(img: np.ndarray, label: np.ndarray, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, pad-and-crop, flip, colour jitter. img (H, W, 3) uint8, label (H, W) uint8."""
    s = random.uniform(*cfg.scale)
    h, w = label.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        # NEAREST_EXACT samples pixel centres like INTER_LINEAR does; plain INTER_NEAREST
        # rounds down and shifts the label by up to half a source pixel against the image.
        label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT)
    ch, cw = cfg.crop
    ph, pw = max(ch - nh, 0), max(cw - nw, 0)
    if ph or pw:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=cfg.ignore_index)
    y = random.randint(0, label.shape[0] - ch)
    x = random.randint(0, label.shape[1] - cw)
    img, label = img[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]
    if cfg.flip and random.random() < 0.5:
        img, label = img[:, ::-1], label[:, ::-1]
    if cfg.jitter > 0:
        img = color_jitter(img, cfg.jitter)
    return np.ascontiguousarray(img), np.ascontiguousarray(label)
