"""What the files of the tools people train with say about a model, so that it runs with no flags:

- **ultralytics** exports carry ``metadata_props`` (``author: Ultralytics``, ``task``, ``names``
  as a Python dict, ``imgsz``): names, unit normalisation (x/255), RGB, letterboxed frames, the
  size it was exported at;
- **Hugging Face** models come with ``config.json`` (``id2label``) and ``preprocessor_config.json``
  (``image_mean``, ``image_std``, ``size``) beside the file;
- **jetson-inference** models with ``classes.txt`` and ``colors.txt`` beside the ``.onnx``.

:func:`tool_defaults` gives the flags these say (the user's own flags win) and one line saying
what was read and from where. ultralytics letterboxes frames (the aspect kept, grey 114
padding), so its files set ``--resize letterbox``."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

__all__ = ["tool_defaults"]

_MEANS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "symmetric": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
          "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))}


def _ultralytics(path: Path) -> tuple[dict[str, Any], str] | None:
    from rtseg.formats.onnx_meta import onnx_metadata_props

    try:
        props = onnx_metadata_props(path)
    except (ValueError, IndexError, UnicodeDecodeError, OSError):  # the wrap itself says what is wrong with the file
        return None
    if "ultralytics" not in props.get("author", "").lower() or "names" not in props:
        return None
    try:
        names = ast.literal_eval(props["names"])  # "{0: 'road', 1: 'sidewalk'}": a literal, never code
        size = ast.literal_eval(props["imgsz"]) if "imgsz" in props else None
    except (ValueError, SyntaxError):
        return None
    if not isinstance(names, dict) or sorted(names) != list(range(len(names))):
        return None
    flags: dict[str, Any] = {"classes": tuple(str(names[i]) for i in range(len(names))), "normalize": "unit",
                             "resize": "letterbox"}
    if isinstance(size, (list, tuple)) and len(size) == 2:
        flags["size"] = (int(size[0]), int(size[1]))
    return flags, f"the file's ultralytics metadata ({len(names)} classes, x/255, RGB, letterboxed)"


def _hugging_face(path: Path) -> tuple[dict[str, Any], str] | None:
    config, pre = path.parent / "config.json", path.parent / "preprocessor_config.json"
    try:
        labels = json.loads(config.read_text()).get("id2label") if config.is_file() else None
        prep = json.loads(pre.read_text()) if pre.is_file() else {}
    except (OSError, ValueError):
        return None
    if not isinstance(labels, dict) or not labels:
        return None
    try:
        ids = sorted(int(k) for k in labels)
    except ValueError:
        return None
    if ids != list(range(len(ids))):
        return None
    flags: dict[str, Any] = {"classes": tuple(str(labels[str(i)]) for i in ids)}
    mean, std = tuple(prep.get("image_mean", ())), tuple(prep.get("image_std", ()))
    norm = next((k for k, (m, s) in _MEANS.items() if len(mean) == 3 and all(abs(a - b) < 1e-3 for a, b in
                                                                            zip(mean + std, m + s))), None)
    if norm:
        flags["normalize"] = norm
    size = prep.get("size")
    if isinstance(size, dict) and "height" in size and "width" in size:
        flags["size"] = (int(size["height"]), int(size["width"]))
    resample = {0: "pil-nearest", 1: "pil-lanczos", 2: "pil-bilinear", 3: "pil-bicubic", 4: "pil-box",
                5: "pil-hamming"}.get(prep.get("resample")) if prep.get("do_resize", True) else None
    if resample:  # its processor resizes with Pillow: so does rtseg, for the same input
        flags["resample"] = resample
    return flags, f"Hugging Face's config.json{' and preprocessor_config.json' if norm else ''} beside it ({len(ids)} classes)"


def _jetson(path: Path) -> tuple[dict[str, Any], str] | None:
    names, colours = path.parent / "classes.txt", path.parent / "colors.txt"
    if not names.is_file():
        return None
    flags: dict[str, Any] = {"classes": str(names)}
    if colours.is_file():
        flags["colors"] = str(colours)
    return flags, f"jetson-inference's classes.txt{' and colors.txt' if colours.is_file() else ''} beside it"


def tool_defaults(path: str | Path, given: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The flags the files of the tool that made ``path`` say, under the ones ``given`` (which win),
    and a line saying what was read (None: nothing was)."""
    path = Path(path)
    for reader in (_ultralytics, _hugging_face, _jetson):
        found = reader(path)
        if found is not None:
            flags, where = found
            used = {k: v for k, v in flags.items() if given.get(k) in (None, False)}
            if not used:
                return {}, None
            return used, f"{', '.join(sorted(used))} from {where}"
    return {}, None
