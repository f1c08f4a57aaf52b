"""ONNX exports of a checkpoint for the engine tests (``weights`` comes from conftest.py)."""
from __future__ import annotations

from pathlib import Path

from rtseg.export.onnx import export_onnx
from rtseg.formats.checkpoint import build_from_checkpoint


def export_weights(weights: Path, output: Path, **kw) -> Path:
    """``weights`` exported to ONNX at ``output`` (``size=``, ``dynamic=`` as for export_onnx)."""
    model, meta = build_from_checkpoint(weights)
    return export_onnx(model, meta, output, **kw)
