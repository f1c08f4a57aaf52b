"""The files rtseg writes and reads, below both the exporters and the engines that use them.

=========================  ==========================================================
:mod:`.checkpoint`         ``.pt``/``.pth``: a state dict plus :class:`~rtseg.meta.ModelMeta`
:mod:`.onnx_meta`          the ModelMeta stored inside an rtseg ``.onnx``
:mod:`.plan`               a TensorRT plan's ``.json`` metadata sidecar
=========================  ==========================================================

:data:`SUFFIXES` says which family a file suffix belongs to; which runtime runs each family is
the engines' table (:mod:`rtseg.engines.runtimes`).
"""
from __future__ import annotations

__all__ = ["SUFFIXES", "suffixes_of"]

# suffix -> artifact family; the order is the one error messages list.
SUFFIXES = {".pt": "pytorch", ".pth": "pytorch", ".onnx": "onnx", ".plan": "tensorrt", ".engine": "tensorrt"}


def suffixes_of(family: str) -> tuple[str, ...]:
    """The suffixes of one family: ``suffixes_of("tensorrt")`` -> ``(".plan", ".engine")``."""
    return tuple(s for s, f in SUFFIXES.items() if f == family)
