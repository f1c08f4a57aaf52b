"""An OpenVINO IR from another tool (ultralytics' ``format="openvino"`` export: a folder with the
``.xml``, the ``.bin`` and ``metadata.yaml``) as an rtseg artifact: rtseg's input (uint8 BGR, NHWC)
and the model's normalisation and channel order put in front of it by OpenVINO's
PrePostProcessor, the classes and the resize mode in its ``rt_info`` (:mod:`rtseg.formats.ir_meta`),
saved as an IR that :class:`~rtseg.engines.openvino_engine.OpenVINOEngine` runs like an rtseg ONNX
file.

Taken: one float NCHW input of 3 channels, and one output of class ids (N, H, W) at the input's
size, as ultralytics' semantic exports end (in an ArgMax). A model whose output is scores, or
ids at another size, is refused in one line: its ONNX export runs (rtseg wraps scores itself).
The ids come as they are, so the temporal filter and the confidence outputs are off for it."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from rtseg.classes import resolve_classes
from rtseg.errors import RtsegError, require
from rtseg.export.foreign import NORMALIZATIONS
from rtseg.formats.ir_meta import META_KEY, ir_rt_info
from rtseg.meta import RESIZE_MODES, ModelMeta

__all__ = ["ir_file", "wrap_openvino_ir"]

log = logging.getLogger(__name__)

def ir_file(path: str | Path) -> Path | None:
    """The IR's ``.xml`` for ``path``: the file itself, or the one ``.xml`` in a folder (an
    ultralytics ``*_openvino_model/``); None when ``path`` is neither."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.glob("*.xml") if p.with_suffix(".bin").is_file())
        if len(found) > 1:
            raise RtsegError(f"{path} holds {len(found)} OpenVINO models ({', '.join(p.name for p in found[:4])}): "
                             "give the .xml to run")
        return found[0] if found else None
    return path if path.suffix.lower() == ".xml" and path.is_file() else None


def wrap_openvino_ir(xml: str | Path, out_xml: str | Path, *, classes: Any = None, colors: str | Path | None = None,
                     normalize: str | None = None, bgr: bool = False, resize: str | None = None,
                     size: Sequence[int] | None = None, note: Callable[[str], None] = log.warning,
                     extra: dict[str, Any] | None = None) -> Path:
    """Write the foreign OpenVINO IR ``xml`` as an rtseg IR at ``out_xml`` (+ its ``.bin``); the
    keywords as :func:`rtseg.export.foreign.wrap_foreign`'s. One-line errors before anything is written."""
    ov = require("openvino", extra="openvino", feature="an OpenVINO IR")
    from openvino.preprocess import ColorFormat, PrePostProcessor

    xml, out_xml = Path(xml), Path(out_xml)
    if resize not in (None, *RESIZE_MODES):
        raise RtsegError(f"--resize {resize!r} is not a way to resize; use {' or '.join(RESIZE_MODES)}")
    if ir_rt_info(xml).find(META_KEY) is not None:
        raise RtsegError(f"{xml} is already an rtseg artifact (it has rtseg metadata): run it as it is")
    try:
        model = ov.Core().read_model(str(xml))
    except RuntimeError as exc:
        raise RtsegError(f"OpenVINO cannot read {xml} ({str(exc).strip().splitlines()[0][:160]})") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise RtsegError(f"{xml} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; rtseg runs an "
                         "IR with one image input and one class-id output (use the model's ONNX export)")
    shape, out_shape = model.input(0).get_partial_shape(), model.output(0).get_partial_shape()
    if (shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[1].is_dynamic or shape[1].get_length() != 3
            or not model.input(0).get_element_type().is_real()):
        raise RtsegError(f"{xml}: expected a float (N, 3, H, W) image input, found {model.input(0).get_element_type()} "
                         f"{shape}")
    same_size = (out_shape.rank.is_static and out_shape.rank.get_length() == 3 and out_shape[1].is_static
                 and shape[2].is_static and out_shape[1].get_length() == shape[2].get_length()
                 and out_shape[2].get_length() == shape[3].get_length())
    if not same_size or model.output(0).get_element_type().is_real():
        raise RtsegError(f"{xml} ends in {model.output(0).get_element_type()} {out_shape}, not class ids (N, H, W) at "
                         "its input's size, as ultralytics' semantic exports do: run the model's ONNX export instead")
    num_classes = len(classes) if isinstance(classes, (list, tuple)) else None
    cls = resolve_classes(classes, num_classes, colors=colors, note=note)
    norm = (normalize or "imagenet").strip().lower()
    if norm not in NORMALIZATIONS:
        raise RtsegError(f"unknown --normalize {normalize!r}; use one of {', '.join(NORMALIZATIONS)}")
    mean, std = NORMALIZATIONS[norm]

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    steps = ppp.input().preprocess().convert_element_type(ov.Type.f32)
    if not bgr:
        steps.convert_color(ColorFormat.RGB)
    steps.mean([m * 255 for m in mean]).scale([s * 255 for s in std])
    ppp.output().tensor().set_element_type(ov.Type.u8)
    model = ppp.build()
    model.output(0).get_tensor().set_names({"ids"})
    h, w = (shape[2].get_length(), shape[3].get_length()) if shape[2].is_static else tuple(size or (512, 512))
    info = {"source": xml.name, "format": "openvino-ir", "normalize": norm, "bgr": bool(bgr), "output_kind": "ids"}
    meta = ModelMeta(model=f"foreign:{xml.name}", num_classes=cls.num_classes, class_names=cls.names,
                     palette=cls.palette, input_size=(h, w), mean=tuple(mean), std=tuple(std), dataset=cls.dataset,
                     extra={**(extra or {}), "foreign": info, "ignore_index": cls.ignore_index,
                            "resize": resize or "stretch",
                            "export": {"format": "openvino", "precision": "fp32", "dynamic": shape[2].is_dynamic}})
    model.set_rt_info(meta.to_json(), [META_KEY])
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_xml.with_name(f".{out_xml.stem}.tmp.xml")
    try:
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(out_xml.with_suffix(".bin"))  # the weights first: an .xml is the entry
        tmp.replace(out_xml)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".bin").unlink(missing_ok=True)
    return out_xml
