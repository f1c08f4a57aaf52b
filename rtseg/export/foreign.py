"""Segmentation models from other tools (torch.onnx, mmdeploy, PaddleSeg, jetson-inference) as
rtseg artifacts.

:func:`inspect_onnx` reads what a foreign ONNX graph says about itself: its input (NCHW or
NHWC, float32, float16 or uint8, 1 or 3 channels, fixed or dynamic size and batch) and its
output (float scores N x C x h x w at any resolution, or integer ids N x H x W / N x 1 x H x W).
:func:`wrap_foreign` writes a new graph with rtseg's contract around it (uint8 BGR frames in,
uint8 ids out; see :mod:`rtseg.export.foreign_nodes`) and the :class:`ModelMeta` that the graph
cannot say (classes, normalisation), so the result loads like ``rtseg export --format onnx``'s.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rtseg.classes import ClassSet, resolve_classes
from rtseg.errors import RtsegError
from rtseg.export.fold import fold_input_affine
from rtseg.export.foreign_argmax import scores_before_argmax
from rtseg.export.foreign_nodes import affine, splice
from rtseg.export.foreign_sizes import KEEPS_CLASSES, eighth_scores, ids_same_size, same_size
from rtseg.formats.onnx_meta import META_KEY, write_onnx_meta
from rtseg.meta import IMAGENET_MEAN, IMAGENET_STD, RESIZE_MODES, ModelMeta

__all__ = ["ForeignGraph", "inspect_onnx", "wrap_foreign", "NORMALIZATIONS", "MIN_OPSET"]

log = logging.getLogger(__name__)

# --normalize name -> (mean, std) on RGB pixels scaled to 0..1: x = (rgb / 255 - mean) / std.
NORMALIZATIONS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),  # torchvision, smp, mmseg, jetson-inference
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # x / 255
    "symmetric": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # x / 127.5 - 1
    "none": ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)),  # raw 0..255
}
MIN_OPSET = 11  # Resize with sizes; older graphs are converted up to 13 first
_DTYPES = {1: "float32", 10: "float16", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 11: "float64", 16: "bfloat16"}
_INPUT_DTYPES = ("float32", "float16", "uint8")
_ID_DTYPES = ("int32", "int64", "uint8", "int8")
_DEFAULT_SIZES = {"camvid": (360, 480), "cityscapes": (512, 1024), "ade20k": (512, 512), "voc": (512, 512)}
_FALLBACK_SIZE = (512, 512)  # a dynamic-size graph with classes of no preset
_STANDARD_DOMAINS = ("", "ai.onnx", "com.microsoft")  # ops ONNX Runtime has (com.microsoft: its own fused ones)
Dim = int | str | None  # a static size, a named dynamic one, or an unnamed dynamic one


@dataclass(frozen=True)
class ForeignGraph:
    """What a foreign ONNX segmentation graph says about its input and output."""

    path: Path
    input_name: str
    output_name: str
    layout: str  # "nchw" or "nhwc"
    dtype: str  # the input's: "float32", "float16" or "uint8"
    channels: int  # 1 (grey) or 3 (colour)
    batch: int | None  # None: any batch size
    size: tuple[int | None, int | None]  # input (H, W); None where dynamic
    output: str  # "scores" (N x C x h x w) or "ids" (N x H x W or N x 1 x H x W)
    output_dtype: str
    output_shape: tuple[Dim, ...]
    num_classes: int | None  # None: the graph does not say (ids whose argmax is out of sight)
    opset: int

    @property
    def dynamic(self) -> bool:
        """True when the input's H and W are both free."""
        return self.size == (None, None)

    def describe(self) -> str:
        h, w = (name if v is None else v for v, name in zip(self.size, "HW"))
        what = f"{self.num_classes}-class scores" if self.output == "scores" else "class ids"
        if self.output == "ids" and self.num_classes:
            what = f"class ids of {self.num_classes} classes"
        shape = f"{h}x{w}x{self.channels}" if self.layout == "nhwc" else f"{self.channels}x{h}x{w}"
        return f"{self.path.name}: {self.dtype} {self.layout.upper()} {shape} '{self.input_name}' -> {what} " \
               f"'{self.output_name}' {_shape_text(self.output_shape)}"


def _shape_text(dims: Sequence[Dim]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _value(v: Any) -> tuple[str, tuple[Dim, ...] | None]:
    """(dtype name, dims or None when the rank is unknown) of a graph input or output."""
    t = v.type.tensor_type
    dtype = _DTYPES.get(t.elem_type, f"type {t.elem_type}")
    if not t.HasField("shape"):
        return dtype, None
    return dtype, tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)


def _listing(values: Sequence[Any]) -> str:
    return ", ".join(f"'{v.name}' {_value(v)[0]} {_shape_text(_value(v)[1] or ())}" for v in values)


def _pick(kind: str, values: Sequence[Any], name: str | None, path: Path) -> Any:
    flag = f"--{kind}-name"
    if not values:
        raise RtsegError(f"{path} has no {kind}s")
    if name is not None:
        for v in values:
            if v.name == name:
                return v
        raise RtsegError(f"{path} has no {kind} named {name!r}; its {kind}s: {_listing(values)}")
    if len(values) > 1:
        raise RtsegError(f"{path} has {len(values)} {kind}s; choose one with {flag}: {_listing(values)}")
    return values[0]


def _load(path: Path) -> Any:
    """The ONNX model at ``path``, checked; a one-line error for a missing, corrupt or truncated file."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise RtsegError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise RtsegError(f"{path} is not a readable ONNX file, or is truncated "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'no detail'})") from None
    if not model.graph.node or not model.graph.output:
        raise RtsegError(f"{path} is not a usable ONNX model (it holds no graph; truncated?)")
    try:
        onnx.checker.check_model(str(path))  # by path: also works past protobuf's 2 GB
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RtsegError(f"{path} is not a valid ONNX model ({str(exc).splitlines()[0][:160]})") from None
    return model


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _input_layout(dims: tuple[Dim, ...], where: str) -> tuple[str, int]:
    """("nchw" | "nhwc", channels) of a rank-4 image input."""
    first, last = dims[1], dims[3]
    ok = (1, 3)
    if first in ok and last not in ok:
        return "nchw", first
    if last in ok and first not in ok:
        return "nhwc", last
    if first in ok and last in ok:  # e.g. 1x3x3x3: NCHW is what nearly every exporter writes
        return "nchw", first
    if isinstance(first, int) and isinstance(last, int):
        raise RtsegError(f"{where} has {first} channels (NCHW) or {last} (NHWC); rtseg feeds 1 (grey) or 3 (colour)")
    fixed = first if isinstance(first, int) and first > 0 else last if isinstance(last, int) and last > 0 else None
    if fixed is not None:  # the one static axis of the two holds the channels (H and W dynamic)
        layout = "NCHW" if fixed == first else "NHWC"
        raise RtsegError(f"{where} has {fixed} channels ({layout}); rtseg feeds 1 (grey) or 3 (colour)")
    raise RtsegError(f"{where}: cannot tell which axis holds its channels (neither dim 1 nor dim 3 is 1 or 3)")


def _class_count(model: Any, output: str, ids: bool) -> int | None:
    """How many classes an output has: for scores the size of axis 1, for ids the axis their
    ArgMax reduces. Read from ONNX shape inference, walking back through casts, resizes and
    softmaxes to the first tensor whose size there is known (a head's Conv); None when the graph
    does not show it (dynamic shapes all the way)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError):
        return None
    producer = {o: n for n in inferred.graph.node for o in n.output}
    shapes = {v.name: _value(v)[1] for v in [*inferred.graph.value_info, *inferred.graph.output]}
    name, axis = output, None if ids else 1
    while True:
        dims = shapes.get(name)
        if axis is not None and dims and -len(dims) <= axis < len(dims) and isinstance(dims[axis], int) \
                and dims[axis] > 0:
            return dims[axis]
        node = producer.get(name)
        if node is None:
            return None
        if node.op_type == "ArgMax" and axis is None:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        elif node.op_type not in KEEPS_CLASSES:
            return None
        name = node.input[0]


def _output_kind(model: Any, out: Any, path: Path) -> tuple[str, int | None]:
    """("scores", C) or ("ids", class count or None) for the chosen output, else a one-line error."""
    dtype, dims = _value(out)
    where = f"{path}: output '{out.name}' ({dtype} {_shape_text(dims or ())})"
    need = "rtseg needs float scores N x C x h x w or integer class ids N x H x W / N x 1 x H x W"
    if dims is None:
        raise RtsegError(f"{where} has no known rank; {need}")
    if len(dims) < 3 or (len(dims) == 4 and dims[2] == 1 and dims[3] == 1):
        raise RtsegError(f"{where} is not a segmentation output (a classifier's?); {need}")
    if dtype in ("float32", "float16", "float64") and len(dims) == 4:
        classes = dims[1]
        if classes == 1:
            raise RtsegError(f"{where} has one score channel (a binary mask needs a threshold, not an argmax); {need}")
        return "scores", classes if isinstance(classes, int) else _class_count(model, out.name, ids=False)
    if dtype in _ID_DTYPES and (len(dims) == 3 or (len(dims) == 4 and dims[1] == 1)):
        return "ids", _class_count(model, out.name, ids=True)
    raise RtsegError(f"{where} is neither scores nor class ids; {need}")


def _inspect(model: Any, path: Path, input_name: str | None, output_name: str | None) -> ForeignGraph:
    init = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in init]  # IR < 4 lists weights as inputs too
    inp = _pick("input", inputs, input_name, path)
    out = _pick("output", list(model.graph.output), output_name, path)
    dtype, dims = _value(inp)
    where = f"{path}: input '{inp.name}' ({dtype} {_shape_text(dims or ())})"
    if dims is None or len(dims) != 4:
        raise RtsegError(f"{where} is not an image batch; rtseg needs N x C x H x W or N x H x W x C")
    if dtype not in _INPUT_DTYPES:
        raise RtsegError(f"{where}: rtseg feeds {', '.join(_INPUT_DTYPES)} images, not {dtype}")
    layout, channels = _input_layout(dims, where)
    h, w = (dims[2], dims[3]) if layout == "nchw" else (dims[1], dims[2])
    kind, classes = _output_kind(model, out, path)
    out_dtype, out_dims = _value(out)
    return ForeignGraph(path=path, input_name=inp.name, output_name=out.name, layout=layout, dtype=dtype,
                        channels=int(channels), batch=dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None,
                        size=tuple(v if isinstance(v, int) and v > 0 else None for v in (h, w)),
                        output=kind, output_dtype=out_dtype, output_shape=out_dims, num_classes=classes,
                        opset=_opset(model))


def inspect_onnx(path: str | Path, input_name: str | None = None, output_name: str | None = None) -> ForeignGraph:
    """What the ONNX file at ``path`` says about its input and output; ``input_name`` /
    ``output_name`` choose among several. One-line :class:`RtsegError` for a missing, corrupt or
    truncated file, several inputs or outputs without a choice, an output that is not a
    segmentation (a classifier's N x 1000), an input that is not 1 or 3 channels."""
    path = Path(path)
    return _inspect(_load(path), path, input_name, output_name)


def _normalisation(normalize: str | None, g: ForeignGraph) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """(name, mean, std) for ``--normalize``; None: imagenet, or none for a uint8 input."""
    if g.dtype == "uint8":
        if normalize not in (None, "none"):
            raise RtsegError(f"--normalize {normalize} cannot apply: input '{g.input_name}' takes uint8 pixels, "
                             "which the model normalises itself; drop --normalize (or use none)")
        return ("none", *NORMALIZATIONS["none"])
    name = (normalize or "imagenet").strip().lower()
    if name not in NORMALIZATIONS:
        raise RtsegError(f"unknown --normalize {normalize!r}; use one of {', '.join(NORMALIZATIONS)}")
    return (name, *NORMALIZATIONS[name])


def _input_size(g: ForeignGraph, cls: ClassSet, size: Sequence[int] | None) -> tuple[int, int]:
    """The artifact's input size: the graph's own where fixed, else ``size``, else the dataset's usual one."""
    default = tuple(size) if size is not None else _DEFAULT_SIZES.get(cls.dataset, _FALLBACK_SIZE)
    fixed = tuple(v if v is not None else d for v, d in zip(g.size, default))
    if size is not None and fixed != tuple(size):
        log.warning("%s takes %dx%d frames only: size %dx%d is not used", g.path.name, *fixed, *size)
    return int(fixed[0]), int(fixed[1])


def _ends_in_softmax(model: Any, output: str) -> bool:
    """Whether ``output`` is a Softmax's, through casts, copies and resizes (probabilities, not logits)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer.get(output)
    while node is not None and node.op_type in ("Cast", "Identity", "Resize", "Upsample") and node.input:
        node = producer.get(node.input[0])
    return node is not None and node.op_type == "Softmax"


def _upgrade(model: Any, path: Path) -> Any:
    """``model`` at opset :data:`MIN_OPSET` or later: converted to 13 when older."""
    if _opset(model) >= MIN_OPSET:
        return model
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, 13)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise RtsegError(f"{path} uses ONNX opset {_opset(model)}, and converting it to 13 failed "
                         f"({str(exc).splitlines()[0][:120]}); re-export it with opset >= {MIN_OPSET}") from None


def wrap_foreign(path: str | Path, out_path: str | Path, *, classes: str | Path | None = None,
                 colors: str | Path | None = None, normalize: str | None = None, bgr: bool = False,
                 resize: str | None = None, input_name: str | None = None,
                 output_name: str | None = None, size: Sequence[int] | None = None,
                 note: Callable[[str], None] = log.warning, extra: dict[str, Any] | None = None) -> Path:
    """Write the foreign segmentation model at ``path`` as an rtseg ONNX artifact at ``out_path``.

    ``classes``: a preset name, a classes.json, a one-name-a-line text file, or None to guess by
    the class count (said through ``note``); ``colors``: a file of colours (R G B or #rrggbb a line). ``normalize``: imagenet (default for float inputs), unit, symmetric or
    none. ``bgr``: the model takes BGR rather than RGB. ``resize``: stretch (default) or letterbox,
    how frames become its input (ModelMeta.extra["resize"], which every engine reads). ``size`` (h, w): the default inference
    size of a dynamic-size graph. ``extra`` goes into the metadata's ``extra`` (e.g. a cache key).
    The graph's dynamic dimensions stay dynamic. Errors (one line each) come before anything is written."""
    import onnx

    path, out_path = Path(path), Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise RtsegError(f"the wrapped model must end in .onnx, got {out_path}")
    if resize not in (None, *RESIZE_MODES):
        raise RtsegError(f"--resize {resize!r} is not a way to resize; use {' or '.join(RESIZE_MODES)}")
    model = _load(path)
    if any(p.key == META_KEY for p in model.metadata_props):
        raise RtsegError(f"{path} is already an rtseg artifact (it has rtseg metadata): run it as it is")
    def full_size(m: Any, scores: str) -> bool:  # the scores at the input's size (else keep the ids as they are)
        g = _inspect(m, path, input_name, scores)
        return g.output == "scores" and same_size(g, m)

    model, output_name, surgery = scores_before_argmax(model, output_name, full_size)  # ids only: the scores before
    if surgery:
        note(f"note: {path.name} ends in an ArgMax: reading the scores before it ('{output_name}'), so the temporal "
             "filter and the confidence outputs work; the ids are the same")
    g = _inspect(model, path, input_name, output_name)
    if len([v for v in model.graph.input if v.name not in {t.name for t in model.graph.initializer}]) > 1:
        raise RtsegError(f"{path} has other inputs besides '{g.input_name}' that rtseg cannot feed")
    custom = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in _STANDARD_DOMAINS})
    if custom:
        raise RtsegError(f"{path} uses operators outside standard ONNX ({', '.join(custom[:4])}), which the runtimes "
                         "rtseg uses lack; re-export it without custom ops (mmdeploy: a plain ONNX backend config)")
    cls = resolve_classes(classes, g.num_classes, colors=colors, note=note)
    norm, mean, std = _normalisation(normalize, g)
    model = _upgrade(model, path)
    opset = _opset(model)
    same = same_size(g, model) if g.output == "scores" else ids_same_size(g)
    splice(model, g, affine(g.channels, mean, std, bgr), bgr, opset, same, probs=_ends_in_softmax(model, g.output_name),
           low_scores=eighth_scores(g, model))
    fold_input_affine(model)  # the normalisation into the network's first convolution, where it has one
    fp16 = g.dtype == "float16" or g.output_dtype == "float16"
    info = {"source": path.name, "input": g.input_name, "output": g.output_name, "layout": g.layout,
            "dtype": g.dtype, "normalize": norm, "bgr": bool(bgr), "output_kind": g.output}
    meta = ModelMeta(model=f"foreign:{path.name}", num_classes=cls.num_classes, class_names=cls.names,
                     palette=cls.palette, input_size=_input_size(g, cls, size), mean=tuple(mean), std=tuple(std),
                     dataset=cls.dataset,
                     extra={**(extra or {}), "foreign": info, "ignore_index": cls.ignore_index,
                            "resize": resize or "stretch",
                            "export": {"format": "onnx", "precision": "fp16" if fp16 else "fp32",
                                       "dynamic": g.dynamic, "opset": opset}})
    write_onnx_meta(model, meta)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RtsegError(f"wrapping {path} made an invalid graph ({str(exc).splitlines()[0][:160]})") from None
    _save(model, out_path)
    log.info("wrapped %s as %s (%s)", path, out_path, g.describe())
    return out_path


def _save(model: Any, out_path: Path) -> None:
    """Write under a temporary name and rename into place, so no reader sees half a file."""
    import onnx

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.{os.urandom(4).hex()}.tmp.onnx")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
