"""Class names and palettes (RGB) of the datasets rtseg knows, and :func:`resolve_classes`,
which says what a model's class ids mean from a preset name, a classes.json file or its count."""
from __future__ import annotations

import colorsys
import json
import re
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rtseg.errors import RtsegError

__all__ = ["read_colors", "CLASSES_FORMATS", "CAMVID_CLASSES", "CAMVID_PALETTE", "CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "ADE20K_CLASSES",
           "ADE20K_PALETTE", "VOC_CLASSES", "VOC_PALETTE", "DATASETS", "PRESETS_BY_COUNT", "ClassSet",
           "resolve_classes", "generated_palette"]

log = logging.getLogger(__name__)

Colour = tuple[int, int, int]

# SegNet's 11-class CamVid; label 11 (void) is ignored.
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
# From camvid11_colours.png of the SegNet tutorial.
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)

# The 19 Cityscapes train ids; 255 is ignored.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# ADE20K's 150 SceneParsing classes, in the order of the benchmark's ids 1..150 (the label files'
# 0, "other", becomes 255 and is ignored), as mmsegmentation and its exports number them.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)
# The SceneParsing benchmark's colours, as mmsegmentation draws them.
ADE20K_PALETTE = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80), (140, 140, 140),
    (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70),
    (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200),
    (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220),
    (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140),
    (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0), (0, 0, 255),
    (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200), (255, 82, 0), (0, 255, 245),
    (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0),
    (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194), (0, 255, 82),
    (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255), (0, 255, 163), (255, 153, 0),
    (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112),
    (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0),
    (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255), (255, 255, 0),
    (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0),
    (25, 194, 194), (102, 255, 0), (92, 0, 255),
)

# Pascal VOC 2012's 20 classes and background; 255 (object borders) is ignored.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def _voc_colour(i: int) -> Colour:
    """VOC's colour map: the bits of ``i`` spread over R, G and B from the high bit down."""
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= ((i >> 0) & 1) << shift
        g |= ((i >> 1) & 1) << shift
        b |= ((i >> 2) & 1) << shift
        i >>= 3
    return r, g, b


VOC_PALETTE = tuple(_voc_colour(i) for i in range(len(VOC_CLASSES)))  # (0, 0, 0), (128, 0, 0), (0, 128, 0), ...

# dataset name -> (class names, palette, ignore id in the label files)
DATASETS = {
    "camvid": (CAMVID_CLASSES, CAMVID_PALETTE, 11),
    "cityscapes": (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, 255),
    "ade20k": (ADE20K_CLASSES, ADE20K_PALETTE, 255),
    "voc": (VOC_CLASSES, VOC_PALETTE, 255),
}
# What a model's class count most likely means when nothing else says (all four counts differ).
PRESETS_BY_COUNT = {len(names): name for name, (names, _, _) in DATASETS.items()}
_TITLES = {"camvid": "CamVid", "cityscapes": "Cityscapes", "ade20k": "ADE20K", "voc": "Pascal VOC"}
MAX_CLASSES = 256  # ids travel as uint8


@dataclass(frozen=True)
class ClassSet:
    """What each class id means: names and RGB colours, indexed by id."""

    dataset: str  # a DATASETS name, the JSON file's stem, or "unknown"
    names: tuple[str, ...]
    palette: tuple[Colour, ...]  # RGB per class
    ignore_index: int = 255  # the label files' "no class" id (for eval and classes.json)

    @property
    def num_classes(self) -> int:
        return len(self.names)


def generated_palette(n: int) -> tuple[Colour, ...]:
    """``n`` distinct, bright RGB colours: hues a golden angle apart, two brightness levels
    alternating, so neighbouring ids never look alike."""
    colours = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65 + 0.35 * (i % 2), 0.95 - 0.3 * (i % 3 == 2))
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colours)


def _preset(name: str) -> ClassSet:
    names, palette, ignore = DATASETS[name]
    return ClassSet(name, tuple(names), tuple(palette), ignore)


def _colour(value: Any, where: str) -> Colour:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        raise RtsegError(f"{where}: a colour must be three integers 0..255, got {value!r}")
    return int(value[0]), int(value[1]), int(value[2])


def _entry(item: Any, i: int, path: Path) -> tuple[int, str, Colour | None]:
    """One class of a classes.json: (id, name, RGB colour or None)."""
    where = f"{path}: class {i}"
    if isinstance(item, str):
        return i, item, None
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise RtsegError(f"{where} must be a name or an object with a \"name\", got {item!r}")
    if "rgb" in item:
        colour = _colour(item["rgb"], where)
    elif "bgr" in item:
        colour = _colour(item["bgr"], where)[::-1]
    else:
        colour = None
    ident = item.get("id", i)
    if not isinstance(ident, int):
        raise RtsegError(f"{where}: \"id\" must be an integer, got {ident!r}")
    return ident, item["name"], colour


def _from_json(path: Path) -> ClassSet:
    """A classes.json as ``--masks`` writes it ({"classes": [{"id", "name", "rgb", "bgr"}, ...],
    "ignore_index"}), as ``--dataset folder`` reads it ({"names", "colors", "ignore_index"}), or a
    bare list of names or of such objects. Missing colours are generated."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RtsegError(f"--classes {path} cannot be read as JSON ({exc})") from None
    items = data.get("classes") if isinstance(data, dict) else data
    if isinstance(data, dict) and "classes" not in data and isinstance(data.get("names"), list):  # train's folder format
        colours = data.get("colors") or []
        items = [{"name": n, **({"rgb": colours[i]} if i < len(colours) else {})} for i, n in enumerate(data["names"])]
    if not isinstance(items, list) or not items:
        raise RtsegError(f"--classes {path} must hold a list of classes, or {{\"classes\": [...]}} as --masks writes")
    entries = sorted(_entry(item, i, path) for i, item in enumerate(items))
    if [e[0] for e in entries] != list(range(len(entries))):
        raise RtsegError(f"--classes {path}: the class ids must be 0..{len(entries) - 1}, each once")
    if len(entries) > MAX_CLASSES:
        raise RtsegError(f"--classes {path} lists {len(entries)} classes; rtseg's ids are uint8 (at most {MAX_CLASSES})")
    spare = generated_palette(len(entries))
    palette = tuple(c if c is not None else spare[i] for i, (_, _, c) in enumerate(entries))
    ignore = data.get("ignore_index", 255) if isinstance(data, dict) else 255
    if not isinstance(ignore, int):
        raise RtsegError(f"--classes {path}: \"ignore_index\" must be an integer, got {ignore!r}")
    return ClassSet(path.stem, tuple(e[1] for e in entries), palette, ignore)


_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")  # a #rrggbb colour (not a comment)


def _lines(path: Path, flag: str) -> list[str]:
    """A text file's lines, stripped, without blank lines and ``#`` comments (a ``#rrggbb`` colour is kept)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise RtsegError(f"{flag} {path} cannot be read as text ({exc})") from None
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and (not line.startswith("#") or _HEX.match(line))]


def _from_text(path: Path) -> ClassSet:
    """A one-name-a-line file (jetson-inference's classes.txt, a labels.txt): names, generated colours."""
    names = _lines(path, "--classes")
    if not names:
        raise RtsegError(f"--classes {path} names no class (one name a line; # starts a comment)")
    if len(names) > MAX_CLASSES:
        raise RtsegError(f"--classes {path} lists {len(names)} classes; rtseg's ids are uint8 (at most {MAX_CLASSES})")
    return ClassSet(path.stem, tuple(names), generated_palette(len(names)))


def read_colors(path: str | Path) -> tuple[Colour, ...]:
    """``--colors FILE``: a colour a line, ``R G B`` (0..255; a fourth value, alpha, is ignored:
    jetson-inference's colors.txt) or ``#rrggbb``; ``#`` starts a comment."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RtsegError(f"--colors {path}: file not found")
    colours = []
    for i, line in enumerate(_lines(path, "--colors")):
        hexed = _HEX.match(line)
        if hexed:
            v = int(hexed.group(1), 16)
            colours.append((v >> 16, (v >> 8) & 255, v & 255))
            continue
        parts = line.replace(",", " ").split()
        try:
            values = [int(v) for v in parts]
        except ValueError:
            values = []
        if len(values) not in (3, 4) or not all(0 <= v <= 255 for v in values):
            raise RtsegError(f"--colors {path}: colour {i} is {line!r}; write R G B (0..255) or #rrggbb, one a line")
        colours.append((values[0], values[1], values[2]))
    if not colours:
        raise RtsegError(f"--colors {path} holds no colour (R G B or #rrggbb, one a line)")
    return tuple(colours)


CLASSES_FORMATS = (f"a preset ({', '.join(DATASETS)}), a classes.json (as --masks writes it, or a JSON list of "
                   "names), or a text file with one name a line (jetson-inference's classes.txt, a labels.txt)")


def resolve_classes(spec: str | Path | None, num_classes: int | None, *, colors: str | Path | None = None,
                    note: Callable[[str], None] = log.warning) -> ClassSet:
    """The classes of a model whose output has ``num_classes`` classes (None: the model does not
    say). ``spec``: a preset (camvid, cityscapes, ade20k, voc), a classes.json path, or None to
    guess by the count (11, 19, 150, 21 are the presets; any other count gets "class N" names and
    generated colours), the guess said in one line through ``note``. A ``spec`` whose count
    differs from ``num_classes`` is an error. ``colors``: a file of colours (:func:`read_colors`)
    that replaces the palette, one per class."""
    found = _resolve(spec, num_classes, note)
    if colors is None:
        return found
    palette = read_colors(colors)
    if len(palette) < found.num_classes:
        raise RtsegError(f"--colors {colors} has {len(palette)} colours for {found.num_classes} classes")
    return ClassSet(found.dataset, found.names, palette[:found.num_classes], found.ignore_index)


def _resolve(spec: str | Path | None, num_classes: int | None, note: Callable[[str], None]) -> ClassSet:
    if spec is None:
        if num_classes is None:
            raise RtsegError("the model's output does not say how many classes it has; "
                             f"pass --classes: {CLASSES_FORMATS}")
        if num_classes in PRESETS_BY_COUNT:
            name = PRESETS_BY_COUNT[num_classes]
            note(f"note: the model has {num_classes} classes: using the {_TITLES[name]} names and colours "
                 "(--classes chooses others)")
            return _preset(name)
        if not 1 < num_classes <= MAX_CLASSES:
            raise RtsegError(f"the model has {num_classes} classes; rtseg needs 2..{MAX_CLASSES} (ids are uint8)")
        note(f"note: the model has {num_classes} classes, which no preset has: naming them 'class 0'.. "
             f"'class {num_classes - 1}' with generated colours (--classes FILE.json names them)")
        names = tuple(f"class {i}" for i in range(num_classes))
        return ClassSet("unknown", names, generated_palette(num_classes))
    if isinstance(spec, (list, tuple)):  # names read from the files of the tool that made the model
        if not spec or len(spec) > MAX_CLASSES:
            raise RtsegError(f"{len(spec)} class names; rtseg takes 1..{MAX_CLASSES}")
        found = ClassSet("names", tuple(str(n) for n in spec), generated_palette(len(spec)))
        if num_classes is not None and found.num_classes != num_classes:
            raise RtsegError(f"the model's files name {found.num_classes} classes but its output has {num_classes}")
        return found
    text = str(spec).strip()
    if text.lower() in DATASETS:
        found = _preset(text.lower())
    elif Path(text).expanduser().is_file():
        path = Path(text).expanduser()
        found = _from_json(path) if path.suffix.lower() == ".json" else _from_text(path)
    elif text.lower().endswith((".json", ".txt", ".names", ".labels")):
        raise RtsegError(f"--classes {text}: file not found")
    else:
        raise RtsegError(f"unknown --classes {text!r}; use {CLASSES_FORMATS}")
    if num_classes is not None and found.num_classes != num_classes:
        raise RtsegError(f"--classes {text} has {found.num_classes} classes but the model's output has "
                         f"{num_classes}")
    return found
