"""Fixtures for the training tests: a tiny synthetic 'folder' data set whose colours encode
the class, so a network learns it in a few steps and alignment is checkable pixel by pixel."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

# BGR colour of each class in the synthetic images (far apart, so colour -> class is unambiguous).
COLORS_BGR = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0]], np.uint8)
NAMES = ["red", "green", "blue"]


def synthetic_pair(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """An image of coloured vertical bands and its label (class ids 0..2, a few 255 pixels)."""
    cuts = np.sort(rng.integers(1, w, size=2))
    label = np.zeros((h, w), np.uint8)
    label[:, cuts[0]:cuts[1]] = 1
    label[:, cuts[1]:] = 2
    label[: h // 8, : w // 8] = 255  # an ignored corner
    img = COLORS_BGR[np.where(label == 255, 0, label)]
    return img, label


def write_folder_dataset(root: Path, *, n: int = 4, size: tuple[int, int] = (64, 96),
                         splits: tuple[str, ...] = ("train", "val"), seed: int = 0) -> Path:
    """``root/classes.json`` and ``root/<split>/{images,labels}/`` with ``n`` pairs per split."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    colors_rgb = [[int(c[2]), int(c[1]), int(c[0])] for c in COLORS_BGR]
    (root / "classes.json").write_text(json.dumps({"names": NAMES, "colors": colors_rgb, "ignore_index": 255}))
    for split in splits:
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, label = synthetic_pair(rng, *size)
            cv2.imwrite(str(root / split / "images" / f"f{i:03d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(root / split / "labels" / f"f{i:03d}.png"), label)
    return root


@pytest.fixture
def folder_data(tmp_path: Path) -> Path:
    """4 train + 4 val synthetic 64x96 frames, 3 classes."""
    return write_folder_dataset(tmp_path / "data")


@pytest.fixture
def make_folder_data():
    """``write_folder_dataset`` itself, for tests that need another shape of data set."""
    return write_folder_dataset


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: a tiny training step slows down badly when several threads
    oversubscribe cores shared with other jobs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``rtseg ARGS...`` in this process: returns (exit code, stdout, stderr)."""
    from tests.conftest import run_main

    def run(*args: str) -> tuple[int, str, str]:
        return run_main(args, monkeypatch, capsys)

    return run
