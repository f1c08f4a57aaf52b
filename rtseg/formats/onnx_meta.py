"""The :class:`~rtseg.meta.ModelMeta` inside an rtseg ONNX file: its JSON in the model's
``metadata_props`` under :data:`META_KEY`. Written by :mod:`rtseg.export.onnx`, read by the ONNX
Runtime and OpenVINO engines and the export cache."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta

__all__ = ["META_KEY", "read_onnx_meta", "write_onnx_meta"]

META_KEY = "rtseg"  # metadata_props key holding ModelMeta JSON


def write_onnx_meta(model: Any, meta: ModelMeta) -> Any:
    """Store ``meta`` in ``model`` (an ``onnx.ModelProto``, changed in place and returned),
    replacing any rtseg metadata already there."""
    kept = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=META_KEY, value=meta.to_json())
    return model


def read_onnx_meta(path: str | Path) -> ModelMeta:
    """The :class:`ModelMeta` stored in an rtseg ONNX file; one-line error for anything else."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise RtsegError(f"ONNX file not found: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise RtsegError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {str(exc)[:120]})") from None
    for prop in graph.metadata_props:
        if prop.key == META_KEY:
            return ModelMeta.from_json(prop.value)
    raise RtsegError(f"{path} is an ONNX file without rtseg metadata (metadata_props['{META_KEY}']); "
                     "export it with 'rtseg export --format onnx'")
