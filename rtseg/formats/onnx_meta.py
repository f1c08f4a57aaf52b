"""The :class:`~rtseg.meta.ModelMeta` inside an rtseg ONNX file: its JSON in the model's
``metadata_props`` under :data:`META_KEY`. Written by :mod:`rtseg.export.onnx`, read by the ONNX
Runtime and OpenVINO engines and the export cache."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta

__all__ = ["META_KEY", "read_onnx_meta", "write_onnx_meta", "onnx_metadata_props"]

META_KEY = "rtseg"  # metadata_props key holding ModelMeta JSON


def write_onnx_meta(model: Any, meta: ModelMeta) -> Any:
    """Store ``meta`` in ``model`` (an ``onnx.ModelProto``, changed in place and returned),
    replacing any rtseg metadata already there."""
    kept = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=META_KEY, value=meta.to_json())
    return model


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """(field number, value) of a protobuf message's fields: ints for varints and fixed widths,
    bytes for length-delimited ones. ValueError/IndexError on a malformed or truncated message."""
    i, end = 0, len(buf)
    while i < end:
        tag, i = _varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > end:
                raise ValueError("truncated")
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            value, i = 0, i + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value
    if i != end:
        raise ValueError("truncated")


def onnx_metadata_props(path: str | Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` (ModelProto field 14: key 1, value 2), read from the
    protobuf's top level without the onnx package: importing it (and ml_dtypes) costs 0.6 s of a
    run's start, to read a few hundred bytes. ValueError/IndexError/OSError for a file that is not
    a well-formed protobuf."""
    props: dict[str, str] = {}
    for number, value in _fields(Path(path).read_bytes()):
        if number == 14 and isinstance(value, bytes):
            entry = dict(_fields(value))
            props[bytes(entry.get(1, b"")).decode()] = bytes(entry.get(2, b"")).decode()
    return props


def read_onnx_meta(path: str | Path) -> ModelMeta:
    """The :class:`ModelMeta` stored in an rtseg ONNX file; one-line error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise RtsegError(f"ONNX file not found: {path}")
    try:
        props = onnx_metadata_props(path)
    except (ValueError, IndexError, UnicodeDecodeError, OSError):  # onnx's own reader says what is wrong
        props = _props_by_onnx(path)
    if META_KEY in props:
        return ModelMeta.from_json(props[META_KEY])
    raise RtsegError(f"{path} is an ONNX file without rtseg metadata (metadata_props['{META_KEY}']); "
                     "export it with 'rtseg export --format onnx'")


def _props_by_onnx(path: Path) -> dict[str, str]:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise RtsegError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {str(exc)[:120]})") from None
    return {p.key: p.value for p in graph.metadata_props}
