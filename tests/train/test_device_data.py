"""The data set held on the device and augmented in batches (train/device_data.py,
train/batch_augment.py): label alignment against the per-frame OpenCV path, padding, the
statistics of the random draws, and real training runs through it on the CPU and (marked
``gpu``) on CUDA."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rtseg.meta import IMAGENET_MEAN, IMAGENET_STD
from rtseg.train.batch_augment import augment_batch, draw_params
from rtseg.train.data import build_dataset
from rtseg.train.device_data import DeviceData, evaluate_device
from rtseg.train.evaluate import evaluate_model
from rtseg.train.transforms import AugmentConfig

# The synthetic frames of conftest.py, whose colour encodes the class (BGR colour per class).
COLORS_BGR = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 0]], np.uint8)


def _pixels(x: torch.Tensor) -> np.ndarray:
    """Normalised (N, 3, h, w) back to RGB pixel values 0..255 (N, h, w, 3)."""
    return ((x.permute(0, 2, 3, 1).numpy() * np.array(IMAGENET_STD)) + np.array(IMAGENET_MEAN)) * 255


def _synthetic_pair(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Coloured vertical bands (BGR) and their label: classes 0..2 and an ignored corner."""
    cuts = np.sort(rng.integers(1, w, size=2))
    label = np.zeros((h, w), np.uint8)
    label[:, cuts[0]:cuts[1]] = 1
    label[:, cuts[1]:] = 2
    label[: h // 8, : w // 8] = 255
    return COLORS_BGR[np.where(label == 255, 0, label)], label


def _batch(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n synthetic frames whose colour encodes the class, as uint8 RGB (N, 3, H, W) and labels (N, H, W)."""
    rng = np.random.default_rng(seed)
    pairs = [_synthetic_pair(rng, h, w) for _ in range(n)]
    imgs = np.stack([img[:, :, ::-1] for img, _ in pairs])
    return torch.from_numpy(imgs.copy()).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.stack([l for _, l in pairs]))


def test_without_scaling_a_crop_and_flip_are_exact_slices():
    images, labels = _batch(6, 40, 56)
    cfg = AugmentConfig(scale=(1.0, 1.0), crop=(32, 48), jitter=0.0)
    draws = draw_params(6, (40, 56), cfg, torch.Generator().manual_seed(3))
    assert draws.flip.any() and not draws.flip.all()  # both branches below are taken
    x, y = augment_batch(images, labels, draws, cfg)
    assert x.shape == (6, 3, 32, 48) and y.shape == (6, 32, 48) and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
    for i in range(6):
        y0, x0 = int(draws.y0[i]), int(draws.x0[i])
        ref_l = labels[i, y0:y0 + 32, x0:x0 + 48].numpy()
        ref_i = images[i, :, y0:y0 + 32, x0:x0 + 48].permute(1, 2, 0).numpy().astype(np.float64)
        if draws.flip[i]:
            ref_l, ref_i = ref_l[:, ::-1], ref_i[:, ::-1]
        np.testing.assert_array_equal(y[i].numpy(), ref_l)
        assert np.abs(_pixels(x[i:i + 1])[0] - ref_i).max() < 0.01


def test_scaled_labels_stay_on_their_pixels_and_match_opencv():
    images, labels = _batch(8, 60, 80, seed=1)
    cfg = AugmentConfig(scale=(0.5, 2.0), crop=(48, 64), jitter=0.0)
    draws = draw_params(8, (60, 80), cfg, torch.Generator().manual_seed(0))
    x, y = augment_batch(images, labels, draws, cfg)
    rgb = _pixels(x)
    colours_rgb = COLORS_BGR[:, ::-1].astype(np.float64)
    agree_cv2 = []
    for i in range(8):
        lab = y[i].numpy()
        # every labelled pixel away from a class edge shows its class's colour
        l8, k = lab.astype(np.uint8), np.ones((3, 3), np.uint8)
        inner = (lab != 255) & (cv2.dilate(l8, k) == l8) & (cv2.erode(l8, k) == l8)
        nearest = np.abs(rgb[i][:, :, None, :] - colours_rgb[None, None]).sum(-1).argmin(-1)
        assert (nearest[inner] == lab[inner]).mean() > 0.99
        # the same choices through OpenCV (resize with NEAREST_EXACT, pad, crop, flip) give the same label
        oh, ow, y0, x0 = (int(v[i]) for v in (draws.out_h, draws.out_w, draws.y0, draws.x0))
        ref = cv2.resize(labels[i].numpy(), (ow, oh), interpolation=cv2.INTER_NEAREST_EXACT)
        ref = cv2.copyMakeBorder(ref, 0, max(48 - oh, 0), 0, max(64 - ow, 0), cv2.BORDER_CONSTANT, value=255)
        ref = ref[y0:y0 + 48, x0:x0 + 64]
        agree_cv2.append((ref[:, ::-1] if draws.flip[i] else ref) == lab)
    assert np.mean(agree_cv2) > 0.98  # differences: ties at exactly half a pixel


def test_a_frame_smaller_than_the_crop_is_padded_black_and_ignored():
    images, labels = _batch(2, 40, 40, seed=2)
    labels[:] = 1
    cfg = AugmentConfig(scale=(0.5, 0.5), crop=(32, 32), flip=False, jitter=0.0)
    draws = draw_params(2, (40, 40), cfg, torch.Generator().manual_seed(0))
    assert (draws.out_h == 20).all() and (draws.y0 == 0).all() and (draws.x0 == 0).all()
    x, y = augment_batch(images, labels, draws, cfg)
    assert (y[:, :20, :20] == 1).all()
    assert (y[:, 20:, :] == 255).all() and (y[:, :, 20:] == 255).all()
    assert np.abs(_pixels(x)[:, 21:, 21:]).max() < 0.01  # black


def test_random_draws_have_the_configured_statistics():
    cfg = AugmentConfig(scale=(0.5, 2.0), crop=(360, 480), jitter=0.3)
    d = draw_params(20000, (360, 480), cfg, torch.Generator().manual_seed(0))
    s = d.out_w.double() / 480
    assert 0.5 <= s.min() and s.max() <= 2.0 and abs(s.mean().item() - 1.25) < 0.02
    assert abs(d.flip.double().mean().item() - 0.5) < 0.02
    assert d.jitter.min() >= 0.7 and d.jitter.max() <= 1.3 and abs(d.jitter.mean().item() - 1.0) < 0.01
    assert (d.y0 <= (d.out_h - 360).clamp(min=0)).all() and (d.x0 <= (d.out_w - 480).clamp(min=0)).all()
    big = d.out_w >= 720  # offsets spread over the whole valid range (s >= 1.5: a third of the draws)
    frac = d.x0[big].double() / (d.out_w[big] - 480).double()
    assert abs(frac.mean().item() - 0.5) < 0.03 and frac.max() > 0.95 and frac.min() < 0.05
    again = draw_params(20000, (360, 480), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(again.x0, d.x0) and torch.equal(again.jitter, d.jitter)  # reproducible: --resume relies on it


def test_jitter_matches_the_per_frame_formula():
    images, labels = _batch(1, 32, 32, seed=4)
    cfg = AugmentConfig(scale=(1.0, 1.0), crop=(32, 32), flip=False, jitter=0.3)
    draws = draw_params(1, (32, 32), cfg, torch.Generator().manual_seed(1))
    x, _ = augment_batch(images, labels, draws, cfg)
    b, c, s = draws.jitter[0].tolist()
    px = images[0].permute(1, 2, 0).numpy().astype(np.float64)
    gray = px.mean(2, keepdims=True)
    px = gray + (px - gray) * s
    px = (px - px.mean()) * c + px.mean()
    ref = np.clip(px * b, 0, 255)
    assert np.abs(_pixels(x)[0] - ref).max() < 0.05


def test_device_data_epochs_cover_every_frame_and_are_reproducible(folder_data: Path):
    ds = build_dataset("folder", folder_data, "train+val")
    assert len(ds) == 8
    data = DeviceData(ds, range(len(ds)), "cpu")
    assert data.images.shape == (8, 3, 64, 96) and data.labels.dtype == torch.uint8
    cfg = AugmentConfig(scale=(1.0, 1.0), crop=(64, 96), flip=False, jitter=0.0)
    assert data.steps(3, drop_last=True) == 2 and data.steps(3, drop_last=False) == 3
    seen = torch.cat([y for _, y in data.batches(2, cfg, torch.Generator().manual_seed(5), drop_last=False)])
    assert sorted(seen.view(8, -1).sum(1).tolist()) == sorted(data.labels.long().view(8, -1).sum(1).tolist())
    first = [y for _, y in data.batches(2, cfg, torch.Generator().manual_seed(5), drop_last=False)]
    assert all(torch.equal(a, b) for a, b in zip(first, seen.split(2)))
    # two ranks: disjoint halves of one permutation
    halves = [torch.cat([y for _, y in data.batches(2, cfg, torch.Generator().manual_seed(5), drop_last=False,
                                                    rank=r, world_size=2)]) for r in (0, 1)]
    assert sorted(torch.cat(halves).view(8, -1).sum(1).tolist()) == sorted(seen.view(8, -1).sum(1).tolist())


def test_evaluate_device_equals_the_frame_by_frame_evaluation(folder_data: Path):
    from torch.utils.data import DataLoader

    from rtseg.nets import create_model

    torch.manual_seed(0)
    model = create_model("fastscnn", num_classes=3).eval()
    ds = build_dataset("folder", folder_data, "val")
    batched = evaluate_device(model, DeviceData(ds, range(len(ds)), "cpu"), 3, size=(64, 64), batch_size=3)
    single = evaluate_model(model, DataLoader(ds, 1), 3, "cpu", size=(64, 64))
    assert torch.equal(batched.mat, single.mat) and batched.mat.sum() > 0


def test_frames_of_several_sizes_are_refused_with_a_one_line_reason(make_folder_data, tmp_path: Path):
    from rtseg.errors import RtsegError

    root = make_folder_data(tmp_path / "a", size=(64, 96))
    make_folder_data(tmp_path / "b", size=(48, 64))
    for f in (tmp_path / "b" / "val" / "images").iterdir():
        f.rename(root / "val" / "images" / f"b_{f.name}")
    for f in (tmp_path / "b" / "val" / "labels").iterdir():
        f.rename(root / "val" / "labels" / f"b_{f.stem}.png")
    ds = build_dataset("folder", root, "val")
    with pytest.raises(RtsegError, match="one size.*--data-on-device off"):
        DeviceData(ds, range(len(ds)), "cpu")


def _train_on(device: str, folder_data: Path, out: Path, cli) -> list[dict]:
    code, _, err = cli("train", "--dataset", "folder", "--data-root", folder_data, "--train-split", "train+val",
                       "--out", out, "--epochs", "3", "--batch-size", "4", "--crop", "64x64", "--workers", "0",
                       "--optimizer", "adamw", "--lr", "5e-3", "--data-on-device", "on", "--device", device,
                       "--class-weights", "espnet", "--quiet", "--no-tensorboard")
    assert code == 0, err
    return json.loads((out / "history.json").read_text())


@pytest.mark.slow
def test_training_with_the_data_on_the_device_lowers_the_loss(cli, folder_data: Path, tmp_path: Path):
    history = _train_on("cpu", folder_data, tmp_path / "run", cli)
    assert [r["steps"] for r in history] == [2, 2, 2]  # 8 frames (train+val), batch 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_with_the_data_on_the_gpu(cli, folder_data: Path, tmp_path: Path):
    history = _train_on("cuda", folder_data, tmp_path / "run", cli)
    assert history[-1]["train_loss"] < history[0]["train_loss"] and 0 <= history[-1]["val_miou"] <= 1
    images, labels = _batch(4, 60, 80)
    cfg = AugmentConfig(scale=(0.5, 2.0), crop=(48, 64), jitter=0.3)
    draws = draw_params(4, (60, 80), cfg, torch.Generator().manual_seed(0))
    x_cpu, y_cpu = augment_batch(images, labels, draws, cfg)
    x_gpu, y_gpu = augment_batch(images.cuda(), labels.cuda(), draws, cfg)
    assert (y_gpu.cpu() == y_cpu).float().mean() > 0.999  # the same choices give the same crops on both devices
    assert (x_gpu.cpu() - x_cpu).abs().max() < 0.05
