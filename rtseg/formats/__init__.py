"""The files rtseg writes and reads, below both the exporters and the engines that use them.

=========================  ==========================================================
:mod:`.checkpoint`         ``.pt``/``.pth``: a state dict plus :class:`~rtseg.meta.ModelMeta`
:mod:`.onnx_meta`          the ModelMeta stored inside an rtseg ``.onnx``
:mod:`.plan`               a TensorRT plan's ``.json`` metadata sidecar
:mod:`.ir_meta`            the ModelMeta inside an rtseg OpenVINO IR (``.xml`` + ``.bin``)
=========================  ==========================================================

:data:`SUFFIXES` says which family a file suffix belongs to; which runtime runs each family is
the engines' table (:mod:`rtseg.engines.runtimes`). :func:`artifact_meta` reads any artifact's
metadata, once per version of the file.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtseg.meta import ModelMeta

__all__ = ["SUFFIXES", "suffixes_of", "artifact_meta"]

# suffix -> artifact family; the order is the one error messages list.
SUFFIXES = {".pt": "pytorch", ".pth": "pytorch", ".onnx": "onnx", ".plan": "tensorrt", ".engine": "tensorrt",
            ".xml": "openvino"}


def suffixes_of(family: str) -> tuple[str, ...]:
    """The suffixes of one family: ``suffixes_of("tensorrt")`` -> ``(".plan", ".engine")``."""
    return tuple(s for s, f in SUFFIXES.items() if f == family)


def artifact_meta(path: str | Path, family: str | None = None) -> "ModelMeta":
    """The :class:`~rtseg.meta.ModelMeta` an rtseg artifact carries: a checkpoint's, an ONNX
    file's (:mod:`.onnx_meta`), an OpenVINO IR's (:mod:`.ir_meta`) or a plan's sidecar's. ``family``
    (pytorch, onnx, tensorrt, openvino;
    default: from the suffix) says which reader.

    Kept per version of the file (its path, inode, size and modification time), so the steps of
    one engine open (the foreign-file check, the default size, the export cache, the backend)
    share one read (a checkpoint's is a whole ``torch.load``, an ONNX file's a whole parse),
    while a file rewritten or replaced is read again. Errors are the format's own one-line ones,
    and are not kept."""
    from rtseg.errors import RtsegError

    path = Path(path)
    family = family or SUFFIXES.get(path.suffix.lower())
    if family not in ("pytorch", "onnx", "tensorrt", "openvino"):
        raise RtsegError(f"{path.name}: not an rtseg artifact (known suffixes: {', '.join(SUFFIXES)})")
    holder = path.with_suffix(".json") if family == "tensorrt" else path  # a plan's metadata is its sidecar
    try:
        st = holder.stat()
    except OSError:
        return _read(path, family)  # missing or unreadable: the reader's own error
    return _kept(str(path), family, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# A few versions: a process meets a few artifacts (the weights, their exports, a wrapped file).
# A ModelMeta is frozen, so one read can be handed to every caller.
@functools.lru_cache(maxsize=16)
def _kept(path: str, family: str, device: int, inode: int, size: int, mtime_ns: int) -> "ModelMeta":
    return _read(Path(path), family)


def _read(path: Path, family: str) -> "ModelMeta":
    if family == "pytorch":
        from rtseg.formats.checkpoint import load_checkpoint

        return load_checkpoint(path)["meta"]
    if family == "onnx":
        from rtseg.formats.onnx_meta import read_onnx_meta

        return read_onnx_meta(path)
    if family == "openvino":
        from rtseg.formats.ir_meta import read_ir_meta

        return read_ir_meta(path)
    from rtseg.formats.plan import read_sidecar

    return read_sidecar(path).meta
