"""The input normalisation folded into the network's first convolution.

rtseg's graphs take uint8 BGR frames and normalise them inside: a 1x1 convolution over the three
channels (the channel swap and ``(x / 255 - mean) / std`` as one affine map ``A x + b``), then the
network, whose first op is nearly always a convolution. On a CPU that 1x1 convolution over the
full-size frame is a dear op for what it does (8% of Fast-SCNN at 360x480 and 5% of ultralytics'
yolo26n-sem at 384x640 in OpenVINO bf16, one thread), and no runtime folds it into the next one.

:func:`fold_input_affine` does, once, at export or wrap time. With the first convolution's weights
``K`` and bias ``B``: ``K (A x + b) + B = (K A) x + (B + K b)`` where the convolution has no
padding, or ``b`` is zero (ultralytics' ``x / 255``). A padded convolution pads the normalised
image with zeros, which ``A x + b`` does not give at the border, so there the shift stays in front
as a per-channel subtraction of the raw pixel value that normalises to zero (``x - s`` with
``A s = -b``), and only ``A`` is folded: ``K A (x - s)``, padded with zeros like the original. An
elementwise subtraction costs a fraction of the 1x1 convolution, and runtimes fuse it with the
cast before it. The ids are those of the unfolded graph up to float rounding (the tests check
both forms on ONNX Runtime in fp32).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rtseg.export.foreign_nodes import Names
from rtseg.export.trt_graph import node_attr

__all__ = ["fold_input_affine"]

_LEAD = {"Cast", "Transpose", "Identity"}  # what may stand between the uint8 input and the affine conv


@dataclass
class _Found:
    """The nodes of a fold: the float raw pixels ``source`` feeding the ``affine`` 1x1 conv (``a``
    x + ``b``), Identity nodes ``between`` it and the ``first`` conv, whose weights are ``k``."""

    source: str
    affine: Any
    between: list
    first: Any
    a: np.ndarray
    b: np.ndarray
    k: np.ndarray


def _array(inits: dict, node: Any, i: int) -> np.ndarray | None:
    """``node``'s input ``i`` as an array where it is an initializer, else None."""
    from onnx import numpy_helper

    name = node.input[i] if len(node.input) > i else ""
    return numpy_helper.to_array(inits[name]) if name in inits else None


def _constant_bias(inits: dict, node: Any) -> bool:
    """Whether a conv's bias is absent or an initializer (one computed in the graph cannot be folded)."""
    return len(node.input) < 3 or not node.input[2] or node.input[2] in inits


def _find(graph: Any, input_name: str) -> _Found | None:
    """The normalisation conv fed by ``input_name`` (through casts and transposes) and the plain
    convolution it alone feeds; None where the graph has another shape."""
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def next_op(tensor: str, skip: tuple[str, ...] = ()) -> Any | None:  # its one reader, ``skip`` ops aside
        users = [n for n in consumers.get(tensor, []) if n.op_type not in skip]
        return users[0] if len(users) == 1 and tensor not in outputs else None

    tensor, affine = input_name, next_op(input_name, ("Shape",))  # Shape: the input's size, read elsewhere
    while affine is not None and affine.op_type in _LEAD:
        tensor, affine = affine.output[0], next_op(affine.output[0], ("Shape",))
    weight = _array(inits, affine, 1) if affine is not None and affine.op_type == "Conv" else None
    if (weight is None or weight.dtype != np.float32 or weight.shape[2:] != (1, 1) or weight.shape[0] != weight.shape[1]
            or not _constant_bias(inits, affine) or node_attr(affine, "group", 1) != 1
            or any(node_attr(affine, "pads", [0]) or [0]) or any(s != 1 for s in node_attr(affine, "strides", [1, 1]))):
        return None
    a = weight[:, :, 0, 0].astype(np.float64)
    bias = _array(inits, affine, 2)
    b = bias.astype(np.float64) if bias is not None else np.zeros(len(a))
    if abs(np.linalg.det(a)) < 1e-12:
        return None
    between, first = [], next_op(affine.output[0])
    while first is not None and first.op_type == "Identity":  # the foreign wrap names the network's input
        between.append(first)
        first = next_op(first.output[0])
    k = _array(inits, first, 1) if first is not None and first.op_type == "Conv" else None
    if (k is None or k.dtype != np.float32 or k.ndim != 4 or k.shape[1] != len(a) or not _constant_bias(inits, first)
            or node_attr(first, "group", 1) != 1
            or node_attr(first, "auto_pad", "NOTSET") != "NOTSET"):
        return None
    return _Found(tensor, affine, between, first, a, b, k.astype(np.float64))


def fold_input_affine(model: Any, input_name: str = "images") -> bool:
    """Fold the 1x1 normalisation convolution fed by ``input_name`` (through casts and transposes)
    into the convolution after it, in place (see the module's docstring). Returns whether it did;
    a graph of another shape (NHWC MatMul normalisation, fp16 weights, a first op that is not a
    plain convolution, a normalised image read by another node too) is left as it is."""
    from onnx import helper, numpy_helper

    graph = model.graph
    f = _find(graph, input_name)
    if f is None:
        return False
    names = Names(model)
    first = f.first
    old_bias = _array({i.name: i for i in graph.initializer}, first, 2)
    bias = old_bias.astype(np.float64) if old_bias is not None else np.zeros(f.k.shape[0])
    folded = np.einsum("ocij,cd->odij", f.k, f.a)  # K A
    source = f.source  # the float raw pixels, NCHW
    if any(node_attr(first, "pads", [0]) or [0]) and np.any(f.b != 0):
        shift = np.linalg.solve(f.a, -f.b)  # raw pixel values that normalise to 0: the padding's value
        shift_name = names.fresh("rtseg_input_shift")
        graph.initializer.append(numpy_helper.from_array(shift.astype(np.float32).reshape(1, -1, 1, 1), shift_name))
        source = names.fresh("rtseg_input_centred")
        sub = helper.make_node("Sub", [f.source, shift_name], [source], name=names.fresh("rtseg_InputShift"))
        graph.node.insert(list(graph.node).index(f.affine), sub)
    else:
        bias = bias + np.einsum("ocij,c->o", f.k, f.b)  # K b, summed over the kernel
    w_name, b_name = names.fresh("rtseg_folded_weight"), names.fresh("rtseg_folded_bias")
    graph.initializer.extend([numpy_helper.from_array(folded.astype(np.float32), w_name),
                              numpy_helper.from_array(bias.astype(np.float32), b_name)])
    first.input[0], first.input[1] = source, w_name
    if len(first.input) > 2:
        first.input[2] = b_name
    else:
        first.input.append(b_name)
    for node in [f.affine, *f.between]:
        graph.node.remove(node)
    used = {name for n in graph.node for name in n.input}  # drop what only the two convolutions read
    inits = {i.name for i in graph.initializer}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    for value in [v for v in graph.input if v.name in inits and v.name not in used]:  # IR < 4 lists them as inputs
        graph.input.remove(value)
    return True
