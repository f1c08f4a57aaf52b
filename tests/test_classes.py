"""Class presets and --classes resolution (rtseg.classes)."""
from __future__ import annotations

import json

import pytest

from rtseg.classes import (ADE20K_CLASSES, ADE20K_PALETTE, DATASETS, VOC_CLASSES, VOC_PALETTE, generated_palette,
                           resolve_classes)
from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta
from rtseg.viz import classes_table


def test_presets_are_complete():
    assert len(ADE20K_CLASSES) == len(ADE20K_PALETTE) == 150 and ADE20K_CLASSES[:3] == ("wall", "building", "sky")
    assert len(VOC_CLASSES) == len(VOC_PALETTE) == 21
    assert VOC_PALETTE[:3] == ((0, 0, 0), (128, 0, 0), (0, 128, 0)) and VOC_PALETTE[15] == (192, 128, 128)  # person
    for name, (names, palette, _) in DATASETS.items():
        assert len(names) == len(palette) == len(set(names)), name
        assert ModelMeta.for_dataset(name).num_classes == len(names)


@pytest.mark.parametrize("count,dataset", [(11, "camvid"), (19, "cityscapes"), (150, "ade20k"), (21, "voc")])
def test_guess_by_count_says_so(count, dataset):
    notes: list[str] = []
    found = resolve_classes(None, count, note=notes.append)
    assert found.dataset == dataset and found.num_classes == count
    assert len(notes) == 1 and f"{count} classes" in notes[0] and "\n" not in notes[0]


def test_other_counts_get_generated_names_and_colours():
    notes: list[str] = []
    found = resolve_classes(None, 7, note=notes.append)
    assert found.names[0] == "class 0" and found.names[6] == "class 6" and len(set(found.palette)) == 7
    assert len(notes) == 1 and "7 classes" in notes[0]
    assert generated_palette(40) == generated_palette(40) and len(set(generated_palette(40))) == 40


def test_classes_json_as_masks_writes_it(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(classes_table(("road", "car", "sky"), ((1, 2, 3), (4, 5, 6), (7, 8, 9)), 9)))
    found = resolve_classes(str(path), 3)
    assert found.names == ("road", "car", "sky") and found.palette[1] == (4, 5, 6) and found.ignore_index == 9
    assert found.dataset == "mine"
    path.write_text(json.dumps(["a", {"name": "b", "bgr": [0, 0, 255]}]))
    assert resolve_classes(path, None).palette[1] == (255, 0, 0)
    path.write_text(json.dumps({"names": ["a", "b"], "colors": [[1, 1, 1], [2, 2, 2]], "ignore_index": 7}))
    found = resolve_classes(path, 2)  # the training folder dataset's classes.json
    assert found.palette == ((1, 1, 1), (2, 2, 2)) and found.ignore_index == 7


@pytest.mark.parametrize("spec,count,match", [
    ("voc", 19, "--classes voc has 21 classes but the model's output has 19"),
    ("kitti", 19, "unknown --classes 'kitti'"),
    ("missing.json", 3, "file not found"),
    (None, None, "does not say how many classes"),
    (None, 1, "rtseg needs 2..256"),
])
def test_errors_are_one_line(spec, count, match):
    with pytest.raises(RtsegError, match=match) as info:
        resolve_classes(spec, count)
    assert "\n" not in str(info.value)


def test_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"classes": [{"id": 1, "name": "x"}]}')
    with pytest.raises(RtsegError, match="ids must be 0..0"):
        resolve_classes(path, None)
    path.write_text("not json")
    with pytest.raises(RtsegError, match="cannot be read as JSON"):
        resolve_classes(path, None)
