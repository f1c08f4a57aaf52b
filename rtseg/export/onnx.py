"""ONNX export of :class:`~rtseg.nets.deploy.DeployModel`: uint8 frames in, uint8 class ids out.

Graph contract: input ``images`` uint8 (N, H, W, 3) BGR, output ``ids`` uint8 (N, H, W) and,
unless ``scores=False`` (the TensorRT path), ``scores`` fp16 (N, C, h, w): the class logits at
the network's own output resolution, for the temporal filter. The normalisation (a 1x1 conv,
then folded into the network's first conv: :mod:`rtseg.export.fold`) and the argmax are inside,
so every runtime gets the same cheap host side. The :class:`ModelMeta` is stored in the model
(:mod:`rtseg.formats.onnx_meta`).

Exporter choice: the TorchScript exporter (``dynamo=False``) followed by onnxscript's
optimiser. The dynamo exporter gives the same graph after its own optimisation but is several
times slower, and cannot make H and W dynamic (the pyramid pooling's bin windows depend on the
map size). The TorchScript exporter records those window computations as ONNX ops, so
``dynamic=True`` works at every size; with static shapes onnxscript folds them into constants,
leaving Conv, Relu, Add, MatMul, Resize, Concat, one Transpose, Casts, the ArgMax and, where
the normalisation's shift cannot go into the first conv's bias, one Sub (opset 17).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from rtseg.errors import RtsegError
from rtseg.export.fold import fold_input_affine
from rtseg.formats.onnx_meta import write_onnx_meta
from rtseg.meta import ModelMeta
from rtseg.nets.deploy import DeployModel

__all__ = ["export_onnx", "onnx_agreement", "DEFAULT_OPSET", "FP16_MIN_AGREEMENT"]

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # Resize/ArgMax semantics ORT, OpenVINO and TensorRT 8.6+ all parse
FP16_MIN_AGREEMENT = 0.99  # fp16 vs fp32 class ids; below this the export logs a warning


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in size)
    if h < 32 or w < 32:
        raise RtsegError(f"export size must be at least 32x32 (the network downsamples by 32), got {h}x{w}")
    return h, w


def _check_frame(size: tuple[int, int]) -> np.ndarray:
    """A real street frame at ``size`` (the bundled benchmark frame) for the fp16 check; a
    smooth synthetic image when it is absent (noise would make agreement meaningless)."""
    import cv2

    from rtseg.bundled import BENCH_FRAME

    h, w = size
    frame = cv2.imread(str(BENCH_FRAME)) if BENCH_FRAME.is_file() else None
    if frame is None:
        yy, xx = np.mgrid[0:h, 0:w]
        frame = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1).astype(np.uint8)
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def onnx_agreement(onnx_path: str | Path, reference: nn.Module, frame: np.ndarray) -> float:
    """Fraction of pixels where the ONNX file (in ONNX Runtime, CPU) and ``reference`` (a
    DeployModel, fp32 PyTorch) give the same class id on one BGR uint8 frame."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(["ids"], {"images": frame[None]})[0]
    with torch.inference_mode():
        want = reference(torch.from_numpy(frame[None]))
    want = (want[0] if isinstance(want, tuple) else want).numpy()
    return float((got == want).mean())


def export_onnx(model: nn.Module, meta: ModelMeta, output: str | Path, *, size: tuple[int, int] | None = None,
                fp16: bool = False, dynamic: bool = False, opset: int | None = None, scores: bool = True) -> Path:
    """Export ``DeployModel(model, meta)`` to ``output`` and return its path.

    ``size`` (h, w) is the static input size (default ``meta.input_size``) and is recorded as the
    artifact's ``input_size``. ``dynamic=True`` makes batch, H and W dynamic (``size`` is then only
    the default inference size). ``fp16=True`` runs the network in fp16 (input stays uint8,
    output uint8 ids); the result is compared with fp32 PyTorch in ONNX Runtime on a real frame and
    the agreement is logged and stored in the metadata (``extra["export"]["fp16_agreement"]``).
    ``scores``: add the ``scores`` output (see the module's docstring).
    """
    import onnx

    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise RtsegError(f"ONNX output must end in .onnx, got {output}")
    h, w = _check_size(size or meta.input_size)
    opset = opset or DEFAULT_OPSET
    meta = dataclasses.replace(meta, input_size=(h, w))

    fp32 = DeployModel(copy.deepcopy(model).float().cpu().eval(), meta, scores=scores).eval()
    deploy = copy.deepcopy(fp32).half() if fp16 else fp32  # .half() also casts the normalisation conv
    example = torch.from_numpy(_check_frame((h, w))[None])  # (1, h, w, 3) uint8
    axes = {"images": {0: "batch", 1: "height", 2: "width"}, "ids": {0: "batch", 1: "height", 2: "width"},
            "scores": {0: "batch", 2: "score_height", 3: "score_width"}}
    names = ["ids", "scores"] if scores else ["ids"]
    output.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": chosen on purpose, see above
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape arithmetic is exported as ops, as intended
        torch.onnx.export(deploy, (example,), str(output), input_names=["images"], output_names=names,
                          opset_version=opset, dynamic_axes={k: axes[k] for k in ["images", *names]} if dynamic else None,
                          dynamo=False, do_constant_folding=True)
    graph = _optimise(onnx.load(str(output)))
    fold_input_affine(graph)  # the normalisation conv into the network's first conv (rtseg.export.fold)

    extra = dict(meta.extra)
    extra["export"] = {"format": "onnx", "precision": "fp16" if fp16 else "fp32", "dynamic": dynamic, "opset": opset,
                       "outputs": names}
    write_onnx_meta(graph, dataclasses.replace(meta, extra=extra))
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(output))

    if fp16:
        agree = onnx_agreement(output, fp32, example[0].numpy())
        (log.info if agree >= FP16_MIN_AGREEMENT else log.warning)(
            "fp16 ONNX vs fp32 PyTorch: class ids agree on %.4f%% of pixels at %dx%d", 100 * agree, h, w)
        extra["export"]["fp16_agreement"] = round(agree, 6)
        write_onnx_meta(graph, dataclasses.replace(meta, extra=extra))
        onnx.save(graph, str(output))
    log.info("exported %s (%s, %s, opset %d)", output, "dynamic size" if dynamic else f"{h}x{w}",
             "fp16" if fp16 else "fp32", opset)
    return output


def _optimise(graph):
    """Constant-fold with onnxscript when it is installed (``rtseg[export]``); otherwise keep the
    graph as exported: it is valid, and ONNX Runtime folds the same constants at load."""
    try:
        from onnxscript import optimizer
    except ImportError:
        log.info("onnxscript is not installed: ONNX graph left unfolded (pip install 'rtseg[export]' for a cleaner one)")
        return graph
    return optimizer.optimize(graph)
