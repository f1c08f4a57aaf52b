"""Other tools' label files: --classes takes a one-name-a-line classes.txt/labels.txt (jetson-
inference's, with # comments) as well as a JSON list and rtseg's classes.json; --colors takes
R G B (or R G B A, jetson-inference's colors.txt) or #rrggbb a line; errors name every format."""
from __future__ import annotations

import json

import pytest

from rtseg.classes import read_colors, resolve_classes
from rtseg.errors import RtsegError


def test_a_one_name_a_line_file_with_comments(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("# jetson-inference style\nvoid\nroad\n\n sidewalk \n# done\n")
    cls = resolve_classes(f, 3)
    assert cls.names == ("void", "road", "sidewalk") and len(set(cls.palette)) == 3 and cls.dataset == "classes"
    with pytest.raises(RtsegError, match="has 3 classes but the model's output has 4"):
        resolve_classes(f, 4)


def test_colors_rgb_rgba_and_hex(tmp_path):
    f = tmp_path / "colors.txt"
    f.write_text("0 0 0\n128 64 128 255\n#f423e8\n# a comment\n")
    assert read_colors(f) == ((0, 0, 0), (128, 64, 128), (244, 35, 232))
    names = tmp_path / "labels.txt"
    names.write_text("void\nroad\nsidewalk\n")
    cls = resolve_classes(names, 3, colors=f)
    assert cls.palette == ((0, 0, 0), (128, 64, 128), (244, 35, 232))
    assert resolve_classes("cityscapes", 19, colors=None).palette[0] == (128, 64, 128)


@pytest.mark.parametrize("text, message", [("1 2\n", "colour 0 is '1 2'"), ("300 0 0\n", "0..255"),
                                           ("red\n", "write R G B"), ("# nothing\n", "holds no colour")])
def test_bad_colors_are_one_line(tmp_path, text, message):
    f = tmp_path / "colors.txt"
    f.write_text(text)
    with pytest.raises(RtsegError, match=message):
        read_colors(f)


def test_too_few_colours(tmp_path):
    (tmp_path / "c.txt").write_text("0 0 0\n")
    with pytest.raises(RtsegError, match="1 colours for 3 classes"):
        resolve_classes(str(_names(tmp_path, 3)), 3, colors=tmp_path / "c.txt")


def _names(folder, n):
    f = folder / "n.txt"
    f.write_text("".join(f"c{i}\n" for i in range(n)))
    return f


def test_a_json_list_still_works_and_the_error_names_every_format(tmp_path):
    f = tmp_path / "names.json"
    f.write_text(json.dumps(["a", "b"]))
    assert resolve_classes(f, 2).names == ("a", "b")
    with pytest.raises(RtsegError) as info:
        resolve_classes("mapillary", 2)
    text = str(info.value)
    assert all(word in text for word in ("camvid", "classes.json", "JSON list of names", "classes.txt", "labels.txt"))
    with pytest.raises(RtsegError, match="--classes labels.txt: file not found"):
        resolve_classes("labels.txt", 2)
