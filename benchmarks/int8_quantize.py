"""Static int8 quantisation of an rtseg ONNX file, calibrated on real frames (used by
benchmarks/cpu_engines.py; not part of the rtseg package).

Measured on the 2-core AMX Xeon with the CamVid weights (benchmarks/results/cpu_engines.json):
int8 is barely faster than fp32 in ONNX Runtime (1.1-1.25x) and slower in OpenVINO (0.86-0.98x),
2x slower than OpenVINO bf16, and it costs up to 1.2 val mIoU points (512x1024; class ids agree
with fp32 on 94-97% of pixels). So it does not ship; this module keeps the row reproducible.

ONNX Runtime's ``quantize_static`` writes a QDQ graph (QuantizeLinear/DequantizeLinear pairs
around each Conv and MatMul): weights int8 per output channel, activations uint8 with scales
from the min/max seen on the calibration frames. The same file runs in ONNX Runtime (int8
kernels) and in OpenVINO, which turns the QDQ pairs into its own int8 (VNNI/AMX) convolutions.

The logits' Resize and the ArgMax stay in float: quantising logits to 256 levels before the
argmax flips ids wherever two classes are close, and those two ops have no int8 kernels to gain.
Calibrate on frames like the ones the model will see (for the CamVid weights: CamVid train
frames), at the file's own input size.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rtseg.errors import RtsegError
from rtseg.formats.onnx_meta import META_KEY, read_onnx_meta

__all__ = ["quantize_onnx", "calibration_frames", "QUANTISED_OPS"]

log = logging.getLogger(__name__)

QUANTISED_OPS = ("Conv", "MatMul")  # where the time goes; everything else stays float
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def calibration_frames(source: str | Path | Sequence[str | Path], count: int) -> list[Path]:
    """``count`` image files spread evenly over a folder (sorted by name) or an explicit list."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise RtsegError(f"calibration folder not found: {folder}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
    else:
        files = [Path(p) for p in source]
    if not files:
        raise RtsegError(f"no calibration images ({', '.join(_IMAGE_EXTS)}) in {source}")
    if count < 1:
        raise RtsegError(f"calibration frame count must be >= 1, got {count}")
    step = max(len(files) / count, 1.0)
    return [files[int(i * step)] for i in range(min(count, len(files)))]


def _static_size(path: Path) -> tuple[int, int]:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    h, w = dims[1], dims[2]
    if not (h.HasField("dim_value") and w.HasField("dim_value")):
        raise RtsegError(f"{path} has a dynamic input size; quantise a fixed-size export "
                         "(rtseg export --format onnx --size HxW, without --dynamic)")
    return h.dim_value, w.dim_value


def quantize_onnx(model: str | Path, output: str | Path, calibration: str | Path | Sequence[str | Path], *,
                  frames: int = 16, per_channel: bool = True) -> Path:
    """Write an int8 QDQ copy of the fixed-size rtseg ONNX file ``model`` to ``output``.

    ``calibration``: a folder of images (e.g. CamVid ``train/``) or a list of image files; ``frames``
    of them, spread evenly, are resized to the model's input size and run through it once to
    collect activation ranges (about one fp32 inference per frame, ~0.5 GB each at 1024x2048).
    The rtseg metadata is carried over, with ``extra["export"]["precision"] = "int8"`` and the
    calibration set named.
    """
    import cv2
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    model, output = Path(model), Path(output)
    if output.suffix.lower() != ".onnx":
        raise RtsegError(f"quantised output must end in .onnx, got {output}")
    meta = read_onnx_meta(model)
    h, w = _static_size(model)
    files = calibration_frames(calibration, frames)

    class Frames(CalibrationDataReader):
        """Feeds one resized BGR uint8 frame (1, h, w, 3) per call, read lazily."""

        def __init__(self) -> None:
            self._it: Iterator[Path] = iter(files)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self._it, None)
            if path is None:
                return None
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise RtsegError(f"cannot read calibration image {path}")
            return {"images": cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)[None]}

        def rewind(self) -> None:
            self._it = iter(files)

    output.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(
        str(model), str(output), Frames(),
        quant_format=QuantFormat.QDQ,  # portable: ORT and OpenVINO both fuse QDQ pairs into int8 kernels
        op_types_to_quantize=list(QUANTISED_OPS),
        per_channel=per_channel,  # depthwise and pointwise weights differ a lot per channel
        activation_type=QuantType.QUInt8,  # post-ReLU activations are >= 0: uint8 keeps all 256 levels
        weight_type=QuantType.QInt8,
        # All frames' activations are held until the ranges are computed (memory grows with
        # ``frames``). Not CalibMaxIntermediateOutputs: onnxruntime 1.31 drops, rather than folds,
        # the batches it clears, and then fails with "No data is collected".
        calibrate_method=CalibrationMethod.MinMax,
    )

    graph = onnx.load(str(output))
    extra = dict(meta.extra)
    extra["export"] = {**dict(extra.get("export", {})), "precision": "int8", "quant_format": "QDQ",
                       "calibration": f"{len(files)} frames from {Path(files[0]).parent}", "per_channel": per_channel}
    props = [p for p in graph.metadata_props if p.key != META_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(props)
    graph.metadata_props.add(key=META_KEY, value=dataclasses.replace(meta, extra=extra).to_json())
    onnx.save(graph, str(output))
    log.info("quantised %s -> %s (int8 QDQ, %d calibration frames at %dx%d)", model.name, output, len(files), h, w)
    return output
