"""The :class:`~rtseg.meta.ModelMeta` inside an rtseg OpenVINO IR (``.xml`` + ``.bin``): its JSON
in the model's ``rt_info`` under :data:`META_KEY`, written by :mod:`rtseg.export.foreign_ir`. Read
from the XML text itself, without importing openvino."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta

__all__ = ["META_KEY", "read_ir_meta", "ir_rt_info"]

META_KEY = "rtseg"  # rt_info key holding ModelMeta JSON


def ir_rt_info(path: str | Path) -> ET.Element:
    """The ``<rt_info>`` element of an OpenVINO IR's XML (empty when it has none); one-line error for
    a file that is not an IR."""
    path = Path(path)
    if not path.is_file():
        raise RtsegError(f"OpenVINO IR not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise RtsegError(f"{path} is not a readable OpenVINO IR ({exc})") from None
    if root.tag != "net":
        raise RtsegError(f"{path} is not an OpenVINO IR (its XML is <{root.tag}>, not <net>)")
    found = root.find("rt_info")
    return found if found is not None else ET.Element("rt_info")


def read_ir_meta(path: str | Path) -> ModelMeta:
    """The :class:`ModelMeta` stored in an rtseg OpenVINO IR; one-line error for anything else."""
    node = ir_rt_info(path).find(META_KEY)
    if node is None or node.get("value") is None:
        raise RtsegError(f"{path} is an OpenVINO IR without rtseg metadata (rt_info['{META_KEY}'])")
    return ModelMeta.from_json(node.get("value"))
