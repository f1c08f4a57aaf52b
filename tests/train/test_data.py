"""Data sets: CamVid (also a root with only some splits), Cityscapes' id mapping, your own
folders, and a one-line error for each kind of bad layout or label."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtseg.errors import RtsegError
from rtseg.train.data import CITYSCAPES_ID_TO_TRAINID, IGNORE, build_dataset


def test_camvid_val_reads_ids_and_void_as_ignore(camvid_root: Path):
    ds = build_dataset("camvid", camvid_root, "val")
    assert len(ds) == 101 and ds.info.num_classes == 11
    img, label = ds.read(0)
    assert img.shape == (360, 480, 3) and label.shape == (360, 480)
    raw = cv2.imread(str(ds.pairs[0][1]), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(label)) <= set(range(11)) | {IGNORE}
    assert np.array_equal(label == IGNORE, raw == 11)  # void (11) and only void is ignored
    x, y = ds[0]
    assert tuple(x.shape) == (3, 360, 480) and y.dtype.is_floating_point is False


def test_camvid_root_with_only_a_test_split(camvid_root: Path, tmp_path: Path):
    root = tmp_path / "camvid_test_only"
    (root / "test").mkdir(parents=True)
    (root / "testannot").mkdir()
    for name in sorted(p.name for p in (camvid_root / "val").iterdir())[:2]:
        shutil.copy(camvid_root / "val" / name, root / "test" / name)
        shutil.copy(camvid_root / "valannot" / name, root / "testannot" / name)
    assert len(build_dataset("camvid", root, "test")) == 2
    with pytest.raises(RtsegError, match=r"'train' image folder not found.*found splits: test"):
        build_dataset("camvid", root, "train")


def test_cityscapes_label_ids_map_to_the_train_ids_file(shared_data: Path):
    root = shared_data / "cityscapes_sample" / "mmseg_pseudo_cityscapes"
    ds = build_dataset("cityscapes", root, "val")
    assert len(ds) == 1 and ds.info.num_classes == 19
    img, label = ds.read(0)
    stem = ds.pairs[0][1].name.replace("_gtFine_labelIds.png", "")
    expected = cv2.imread(str(ds.pairs[0][1].with_name(f"{stem}_gtFine_labelTrainIds.png")), cv2.IMREAD_UNCHANGED)
    assert img.shape[:2] == label.shape == expected.shape == (128, 256)
    # The sample's label files were shrunk to 256x128 one by one, so about 0.3% of (boundary)
    # pixels disagree between them; the mapping itself must give every raw id the train id
    # that most of its pixels carry in labelTrainIds, and agree on > 99% of the pixels.
    raw = cv2.imread(str(ds.pairs[0][1]), cv2.IMREAD_UNCHANGED)
    for raw_id in np.unique(raw):
        ids, counts = np.unique(expected[raw == raw_id], return_counts=True)
        assert label[raw == raw_id][0] == ids[counts.argmax()], f"labelId {raw_id}"
        assert (label[raw == raw_id] == label[raw == raw_id][0]).all()
    assert (label == expected).mean() > 0.99
    assert len(np.unique(expected)) > 5  # the frame exercises several classes and the ignore id


def test_cityscapes_mapping_table():
    # cityscapesScripts: road 7 -> 0, sky 23 -> 10, person 24 -> 11, bicycle 33 -> 18; 19 train ids
    assert CITYSCAPES_ID_TO_TRAINID[7] == 0 and CITYSCAPES_ID_TO_TRAINID[23] == 10
    assert CITYSCAPES_ID_TO_TRAINID[24] == 11 and CITYSCAPES_ID_TO_TRAINID[33] == 18
    assert sorted(CITYSCAPES_ID_TO_TRAINID.values()) == list(range(19))


def test_folder_dataset(folder_data: Path):
    ds = build_dataset("folder", folder_data, "train")
    assert len(ds) == 4 and ds.info.class_names == ("red", "green", "blue") and ds.info.name == "data"
    _, label = ds.read(0)
    assert set(np.unique(label)) == {0, 1, 2, IGNORE}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_root_and_unknown_dataset(tmp_path: Path):
    with pytest.raises(RtsegError, match="data root not found") as e:
        build_dataset("camvid", tmp_path / "nope", "train")
    _one_line(e)
    with pytest.raises(RtsegError, match="choose one of: camvid, cityscapes, folder"):
        build_dataset("kitti", tmp_path, "train")


def test_unmatched_names(folder_data: Path):
    (folder_data / "train" / "labels" / "f001.png").rename(folder_data / "train" / "labels" / "other.png")
    with pytest.raises(RtsegError, match="1 image.*no label with a matching name, e.g. f001.jpg") as e:
        build_dataset("folder", folder_data, "train")
    _one_line(e)


def test_size_mismatch_names_both_files(folder_data: Path):
    label_path = folder_data / "train" / "labels" / "f000.png"
    cv2.imwrite(str(label_path), np.zeros((10, 10), np.uint8))
    ds = build_dataset("folder", folder_data, "train")
    with pytest.raises(RtsegError, match=r"size mismatch: image f000.jpg is 64x96 but label f000.png is 10x10 \(HxW\)") as e:
        ds.read(0)
    _one_line(e)


def test_label_values_out_of_range(folder_data: Path):
    label_path = folder_data / "train" / "labels" / "f002.png"
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    label[5, 5], label[6, 6] = 7, 9
    cv2.imwrite(str(label_path), label)
    ds = build_dataset("folder", folder_data, "train")
    with pytest.raises(RtsegError, match=r"values \[7, 9\] outside the 3 classes") as e:
        ds.read(2)
    _one_line(e)


def test_camvid_label_value_out_of_range(camvid_root: Path, tmp_path: Path):
    root = tmp_path / "cv"
    (root / "val").mkdir(parents=True)
    (root / "valannot").mkdir()
    name = sorted(p.name for p in (camvid_root / "val").iterdir())[0]
    shutil.copy(camvid_root / "val" / name, root / "val" / name)
    label = cv2.imread(str(camvid_root / "valannot" / name), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 12
    cv2.imwrite(str(root / "valannot" / name), label)
    with pytest.raises(RtsegError, match=r"values \[12\] outside the 11 classes of camvid"):
        build_dataset("camvid", root, "val").read(0)


@pytest.mark.parametrize("spec, message", [
    ("{not json", "malformed"),
    (json.dumps({"names": ["a", "b"], "colors": [[1, 2, 3]]}), "2 names and 1 colors"),
    (json.dumps({"names": ["a", "b"], "colors": [[1, 2, 3], [4, 5, 6]], "ignore_index": 1}), "collides"),
])
def test_bad_classes_file(tmp_path: Path, spec: str, message: str, make_folder_data):
    root = make_folder_data(tmp_path / "d", n=1)
    (root / "classes.json").write_text(spec)
    with pytest.raises(RtsegError, match=message):
        build_dataset("folder", root, "train")


def test_missing_classes_file_and_split(tmp_path: Path, make_folder_data):
    root = make_folder_data(tmp_path / "d", n=1, splits=("train",))
    with pytest.raises(RtsegError, match=r"'val' image folder not found.*found splits: train"):
        build_dataset("folder", root, "val")
    (root / "classes.json").unlink()
    with pytest.raises(RtsegError, match="classes file not found"):
        build_dataset("folder", root, "train")
