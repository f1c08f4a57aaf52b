"""A TensorRT plan's metadata sidecar: ``fastscnn.plan`` + ``fastscnn.json``. A plan cannot
carry metadata itself, so the sidecar holds the model's :class:`~rtseg.meta.ModelMeta`, the plan's
I/O tensors and how it was built. Written by :mod:`rtseg.export.tensorrt`, read by the TensorRT
engine and the export cache."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta

__all__ = ["TensorInfo", "PlanInfo", "SIDECAR_FORMAT", "sidecar_path", "write_sidecar", "read_sidecar"]

SIDECAR_FORMAT = "rtseg-tensorrt-sidecar/1"


@dataclass(frozen=True)
class TensorInfo:
    """One I/O tensor of a plan, addressed by name."""

    name: str
    dtype: str  # numpy dtype name, e.g. "uint8"
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorInfo":
        return cls(name=str(d["name"]), dtype=str(d["dtype"]), shape=tuple(int(v) for v in d["shape"]))


@dataclass(frozen=True)
class PlanInfo:
    """What the sidecar ``<plan stem>.json`` holds: the model's metadata plus the plan's I/O."""

    meta: ModelMeta
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    precision: str  # "fp32" | "fp16" | "int8"
    tensorrt_version: str

    @property
    def input_size(self) -> tuple[int, int]:
        """(h, w) of the plan's NHWC input."""
        shape = self.inputs[0].shape
        return int(shape[1]), int(shape[2])

    def to_dict(self) -> dict[str, Any]:
        return {"format": SIDECAR_FORMAT, "meta": self.meta.to_dict(),
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "precision": self.precision, "tensorrt_version": self.tensorrt_version}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PlanInfo":
        if not isinstance(d, dict) or d.get("format") != SIDECAR_FORMAT:
            raise RtsegError(f"not an rtseg TensorRT sidecar (no '{SIDECAR_FORMAT}' format tag)")
        try:
            info = cls(meta=ModelMeta.from_dict(d["meta"]),
                       inputs=tuple(TensorInfo.from_dict(t) for t in d["inputs"]),
                       outputs=tuple(TensorInfo.from_dict(t) for t in d["outputs"]),
                       precision=str(d["precision"]), tensorrt_version=str(d["tensorrt_version"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RtsegError(f"the sidecar is incomplete or malformed ({type(exc).__name__}: {exc})") from None
        if len(info.inputs) != 1 or len(info.inputs[0].shape) != 4 or len(info.outputs) != 1:
            raise RtsegError("the sidecar must list one NHWC input and one output tensor")
        return info


def sidecar_path(plan: str | Path) -> Path:
    """``fastscnn.plan`` -> ``fastscnn.json``."""
    return Path(plan).with_suffix(".json")


def write_sidecar(plan: str | Path, info: PlanInfo) -> Path:
    """Write ``info`` beside ``plan`` (:func:`sidecar_path`) and return where."""
    path = sidecar_path(plan)
    path.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    return path


def read_sidecar(plan: str | Path) -> PlanInfo:
    """The sidecar of ``plan``, or a one-line RtsegError naming the file and the problem."""
    path = sidecar_path(plan)
    if not path.is_file():
        raise RtsegError(f"{path} is missing: a TensorRT plan needs its metadata sidecar (same stem, .json), "
                         f"written by 'rtseg export --format engine'")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RtsegError(f"{path} is not valid JSON ({exc})") from None
    try:
        return PlanInfo.from_dict(data)
    except RtsegError as exc:
        raise RtsegError(f"{path}: {exc}") from None
