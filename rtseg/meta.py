"""The metadata every rtseg artifact carries (checkpoint, ONNX file, TensorRT sidecar).

With it, ``rtseg run --engine X`` needs nothing else to preprocess frames and to draw the
right colours and names.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from rtseg.classes import DATASETS
from rtseg.errors import RtsegError

__all__ = ["ModelMeta", "IMAGENET_MEAN", "IMAGENET_STD", "RESIZE_MODES", "PIL_FILTERS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, on pixels scaled to 0..1
IMAGENET_STD = (0.229, 0.224, 0.225)
# How a frame becomes the network's input, ``extra["resize"]`` (absent: stretch): stretched to the
# size, or letterboxed into it (the aspect kept, grey padding; rtseg.engines.base.letterbox_box).
RESIZE_MODES = ("stretch", "letterbox")
# ``extra["resample"]``: the model's tool resizes with Pillow (Hugging Face's image processors: their
# ``resample``, a PIL filter number), whose filters widen when shrinking (antialiased), where
# OpenCV's INTER_LINEAR samples 2x2 pixels whatever the scale: the same resize gives the same input.
PIL_FILTERS = {"pil-nearest": 0, "pil-lanczos": 1, "pil-bilinear": 2, "pil-bicubic": 3, "pil-box": 4, "pil-hamming": 5}


@dataclass(frozen=True)
class ModelMeta:
    """What a trained network needs around it to be used."""

    model: str  # registered network name, e.g. "fastscnn"
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB per class
    input_size: tuple[int, int]  # (h, w) the artifact was made or trained for
    mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB; x = (rgb / 255 - mean) / std
    std: tuple[float, float, float] = IMAGENET_STD
    dataset: str = "unknown"
    model_args: Mapping[str, Any] = field(default_factory=dict)  # builder options beyond num_classes, e.g. {"width": 64} for unet
    extra: Mapping[str, Any] = field(default_factory=dict)  # free-form: training figures etc.

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise RtsegError(f"num_classes must be >= 1, got {self.num_classes}")
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise RtsegError(
                f"metadata lists {len(self.class_names)} class names and {len(self.palette)} colours "
                f"for {self.num_classes} classes"
            )

    @classmethod
    def for_dataset(cls, dataset: str, *, model: str = "fastscnn", input_size: tuple[int, int] = (360, 480),
                    **kw: Any) -> "ModelMeta":
        """Metadata for a known dataset (``camvid``, ``cityscapes``)."""
        if dataset not in DATASETS:
            raise RtsegError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
        names, palette, _ = DATASETS[dataset]
        return cls(model=model, num_classes=len(names), class_names=names, palette=palette,
                   input_size=input_size, dataset=dataset, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["palette"] = [list(c) for c in self.palette]
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["model_args"] = dict(self.model_args)
        d["extra"] = dict(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelMeta":
        try:
            return cls(
                model=str(d["model"]),
                num_classes=int(d["num_classes"]),
                class_names=tuple(str(n) for n in d["class_names"]),
                palette=tuple((int(c[0]), int(c[1]), int(c[2])) for c in d["palette"]),
                input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
                mean=tuple(float(v) for v in d.get("mean", IMAGENET_MEAN)),
                std=tuple(float(v) for v in d.get("std", IMAGENET_STD)),
                dataset=str(d.get("dataset", "unknown")),
                model_args=dict(d.get("model_args", {})),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RtsegError(f"artifact metadata is incomplete or malformed ({type(exc).__name__}: {exc})") from None

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise RtsegError(f"artifact metadata is not valid JSON ({exc})") from None
