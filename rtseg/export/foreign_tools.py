"""What the files of the tools people train with say about a model, so that it runs with no flags:

- **ultralytics** exports carry ``metadata_props`` (``author: Ultralytics``, ``task``, ``names``
  as a Python dict, ``imgsz``): names, unit normalisation (x/255), RGB, letterboxed frames, the
  size it was exported at;
- **Hugging Face** models come with ``config.json`` (``id2label``) and ``preprocessor_config.json``
  (``image_mean``, ``image_std``, ``size``) beside the file;
- **jetson-inference** models with ``classes.txt`` and ``colors.txt`` beside the ``.onnx``;
- ultralytics' **OpenVINO** exports, ``metadata.yaml`` beside the ``.xml`` (or the IR's ``rt_info``).

:func:`tool_defaults` gives the flags these say (the user's own flags win) and one line saying
what was read and from where. ultralytics letterboxes frames (the aspect kept, grey 114
padding), so its files set ``--resize letterbox``."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from rtseg.export.foreign import NORMALIZATIONS
from rtseg.meta import PIL_FILTERS

__all__ = ["tool_defaults"]



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


def _ultralytics_ir(xml: Path) -> tuple[dict[str, Any], str] | None:
    """ultralytics' OpenVINO export (``format="openvino"``): ``metadata.yaml`` beside the ``.xml``
    (names, imgsz) or, without it (or without PyYAML), the IR's own ``rt_info`` (its labels)."""
    from rtseg.formats.ir_meta import ir_rt_info

    meta_file = xml.parent / "metadata.yaml"
    names, size, where = None, None, None
    if meta_file.is_file():
        try:
            import yaml

            doc = yaml.safe_load(meta_file.read_text())
        except Exception:  # no PyYAML, or a file it cannot read: the IR's rt_info below
            doc = None
        if isinstance(doc, dict) and "ultralytics" in str(doc.get("author", "")).lower():
            raw = doc.get("names")
            if isinstance(raw, dict) and sorted(raw) == list(range(len(raw))):
                names = tuple(str(raw[i]) for i in range(len(raw)))
            imgsz = doc.get("imgsz")
            if isinstance(imgsz, (list, tuple)) and len(imgsz) == 2:
                size = (int(imgsz[0]), int(imgsz[1]))
            where = "ultralytics' metadata.yaml beside it"
    if names is None:
        info = ir_rt_info(xml).find("model_info")
        labels = info.find("labels") if info is not None else None
        if info is None or info.find("model_type") is None or labels is None:
            return None
        names = tuple(labels.get("value", "").split())
        where = where or "the IR's ultralytics rt_info"
    if not names:
        return None
    flags: dict[str, Any] = {"classes": names, "normalize": "unit", "resize": "letterbox"}
    if size is not None:
        flags["size"] = size
    return flags, f"{where} ({len(names)} classes, x/255, RGB, letterboxed)"


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
    norm = next((k for k, (m, s) in NORMALIZATIONS.items() if len(mean) == 3 and all(abs(a - b) < 1e-3 for a, b in
                                                                            zip(mean + std, m + s))), None)
    if norm:
        flags["normalize"] = norm
    size = prep.get("size")
    if isinstance(size, dict) and "height" in size and "width" in size:
        flags["size"] = (int(size["height"]), int(size["width"]))
    by_number = {number: name for name, number in PIL_FILTERS.items()}
    resample = by_number.get(prep.get("resample")) if prep.get("do_resize", True) else None
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
    first = _ultralytics_ir if path.suffix.lower() == ".xml" else _ultralytics  # an OpenVINO IR, or an ONNX file
    for reader in (first, _hugging_face, _jetson):
        found = reader(path)
        if found is not None:
            flags, where = found
            used = {k: v for k, v in flags.items() if given.get(k) in (None, False)}
            if not used:
                return {}, None
            return used, f"{', '.join(sorted(used))} from {where}"
    return {}, None
