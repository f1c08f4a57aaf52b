"""The nodes :func:`rtseg.export.foreign.wrap_foreign` puts around a foreign network, so the
wrapped graph has rtseg's contract: uint8 (N, H, W, 3) BGR ``images`` in, uint8 (N, H, W)
``ids`` out, with the conversion to what the network takes and the argmax inside.

Before the network: Cast to float, then the channel swap and the normalisation as one affine map
(a 1x1 Conv on NCHW, as rtseg's own exports do, or a MatMul plus Add on NHWC), then a Cast to
float16 for fp16 graphs. After it: scores are cast to float32, enlarged to the input size
(bilinear, half-pixel centres, as ``F.interpolate(align_corners=False)``) and argmaxed into
uint8 ids; integer ids are cast to uint8, squeezed to (N, h, w) and, unless static shapes show them at
the input size, enlarged to it (nearest). A model with scores also gets
rtseg's second output, ``scores`` (fp16 (N, C, H/8, W/8), the temporal filter's input, as rtseg's
own exports have it): its scores resized to 1/8 of the input, or, where the graph itself enlarges
scores it made at 1/8 (ultralytics), those as they are (the log of them where the model ends
in a Softmax, so that they are logits up to a constant, as the filter expects).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["IMAGES", "IDS", "SCORES", "Names", "splice", "affine"]

IMAGES, IDS, SCORES = "images", "ids", "scores"  # rtseg's graph input and output names (rtseg.export.onnx)
STRIDE = 8  # the scores output's resolution: 1/8 of the input, as rtseg's own networks give it
GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights of R, G, B, as cv2.cvtColor's BGR2GRAY


def affine(channels: int, mean: Sequence[float], std: Sequence[float], bgr: bool) -> tuple[np.ndarray, np.ndarray]:
    """(weight (channels, 3), bias (channels,)) mapping BGR 0..255 to what the network takes:
    out[c] = (in[src(c)] / 255 - mean[c]) / std[c], src(c) = 2 - c (RGB) or c (``bgr``). One
    channel: BT.601 grey, normalised with the luma-weighted mean and std."""
    weight = np.zeros((channels, 3), np.float32)
    if channels == 1:
        m = sum(g * v for g, v in zip(GREY, mean))
        s = sum(g * v for g, v in zip(GREY, std))
        for c in range(3):
            weight[0, 2 - c] = GREY[c] / (255.0 * s)
        return weight, np.array([-m / s], np.float32)
    for c in range(3):
        weight[c, c if bgr else 2 - c] = 1.0 / (255.0 * std[c])
    return weight, np.array([-m / s for m, s in zip(mean, std)], np.float32)


class Names:
    """Every tensor and node name of a model, and fresh ones that collide with none of them."""

    def __init__(self, model: Any):
        self.used: set[str] = set()
        for graph in _graphs(model.graph):
            for node in graph.node:
                self.used.update(node.input, node.output, [node.name])
            for group in (graph.input, graph.output, graph.value_info, graph.initializer):
                self.used.update(v.name for v in group)

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name


def _graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph inside it (If, Loop, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def rename(model: Any, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` everywhere in ``model`` (subgraphs see outer tensors)."""
    for graph in _graphs(model.graph):
        for node in graph.node:
            for field in (node.input, node.output):
                for i, name in enumerate(field):
                    if name == old:
                        field[i] = new
        for group in (graph.input, graph.output, graph.value_info, graph.initializer):
            for v in group:
                if v.name == old:
                    v.name = new


class _Builder:
    """Nodes and constants to add, named so that nothing in the model collides."""

    def __init__(self, names: Names, opset: int):
        self.names, self.opset, self.nodes, self.inits = names, opset, [], []

    def const(self, base: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.names.fresh(f"rtseg_{base}")
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = out or self.names.fresh(f"rtseg_{op_type.lower()}")
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.names.fresh(f"rtseg_{op_type}"),
                                           **attrs))
        return out

    def squeeze1(self, x: str, out: str | None = None) -> str:
        """Squeeze axis 1 (an attribute before opset 13, an input from it)."""
        if self.opset >= 13:
            return self.op("Squeeze", [x, self.const("axis1", np.array([1], np.int64))], out)
        return self.op("Squeeze", [x], out, axes=[1])


def _preprocess(b: _Builder, g: Any, affine_map: tuple[np.ndarray, np.ndarray], bgr: bool, out: str) -> None:
    """uint8 NHWC BGR ``images`` -> ``out``, the tensor the network reads."""
    from onnx import TensorProto

    x = IMAGES
    if g.dtype == "uint8":  # the network takes raw pixels and normalises them itself
        if g.channels == 3 and not bgr:
            x = b.op("Gather", [x, b.const("rgb", np.array([2, 1, 0], np.int64))], axis=3)
        elif g.channels == 1:
            f = b.op("Cast", [x], to=TensorProto.FLOAT)
            grey = b.op("MatMul", [f, b.const("grey", np.array(GREY[::-1], np.float32)[:, None])])
            grey = b.op("Add", [grey, b.const("half", np.array(0.5, np.float32))])  # round, not truncate
            x = b.op("Cast", [grey], to=TensorProto.UINT8)
        if g.layout == "nchw":
            x = b.op("Transpose", [x], perm=[0, 3, 1, 2])
        b.op("Identity", [x], out)
        return
    weight, bias = affine_map
    x = b.op("Cast", [x], to=TensorProto.FLOAT)
    if g.layout == "nchw":
        x = b.op("Transpose", [x], perm=[0, 3, 1, 2])
        x = b.op("Conv", [x, b.const("norm_weight", weight[:, :, None, None]), b.const("norm_bias", bias)])
    else:
        x = b.op("MatMul", [x, b.const("norm_weight", np.ascontiguousarray(weight.T))])
        x = b.op("Add", [x, b.const("norm_bias", bias)])
    if g.dtype == "float16":
        x = b.op("Cast", [x], to=TensorProto.FLOAT16)
    b.op("Identity", [x], out)


def _dims(b: _Builder, x: str, start: int, end: int) -> str:
    """int64 dims ``start:end`` of ``x``'s shape, as a graph tensor (sizes made at run time)."""
    return b.op("Slice", [b.op("Shape", [x]), b.const("start", np.array([start], np.int64)),
                          b.const("end", np.array([end], np.int64)), b.const("axis0", np.array([0], np.int64))])


def _resize(b: _Builder, x: str, sizes: str, out: str | None = None, **attrs: Any) -> str:
    """ONNX Resize of ``x`` to ``sizes``; opsets 11 and 12 want roi and scales present, even if empty."""
    empty = [b.const("empty", np.zeros(0, np.float32))] * 2 if b.opset < 13 else ["", ""]
    return b.op("Resize", [x, *empty, sizes], out, **attrs)


def _resize_to_input(b: _Builder, scores: str) -> str:
    """``scores`` (N, C, h, w) enlarged to the input's H x W, bilinear with half-pixel centres."""
    sizes = b.op("Concat", [_dims(b, scores, 0, 2), _dims(b, IMAGES, 1, 3)], axis=0)
    return _resize(b, scores, sizes, mode="linear", coordinate_transformation_mode="half_pixel")


def _nearest_to_input(b: _Builder, ids: str, out: str) -> None:
    """uint8 (N, h, w) ``ids`` -> ``out`` at the input's H x W: nearest, ``floor(x * h / H)`` as
    OpenCV's INTER_NEAREST takes them (asymmetric coordinates, rounded down)."""
    _resize(b, ids, _dims(b, IMAGES, 0, 3), out, mode="nearest", coordinate_transformation_mode="asymmetric",
            nearest_mode="floor")


def _scores_output(b: _Builder, scores: str, probs: bool, at_eighth: bool = False) -> None:
    """float32 (N, C, h, w) ``scores`` -> the fp16 (N, C, H/8, W/8) ``scores`` output; ``at_eighth``:
    they are at H/8 x W/8 already."""
    from onnx import TensorProto

    x = scores
    if not at_eighth:
        eighth = b.op("Max", [b.op("Div", [_dims(b, IMAGES, 1, 3), b.const("stride", np.array([STRIDE], np.int64))]),
                              b.const("one", np.array([1], np.int64))])
        sizes = b.op("Concat", [_dims(b, scores, 0, 2), eighth], axis=0)
        x = _resize(b, scores, sizes, mode="linear", coordinate_transformation_mode="half_pixel")
    if probs:  # probabilities: their log, floored, so that the filter's softmax gives them back
        x = b.op("Log", [b.op("Max", [x, b.const("tiny", np.array(1e-6, np.float32))])])
    b.op("Cast", [x], SCORES, to=TensorProto.FLOAT16)


def _postprocess(b: _Builder, g: Any, result: str, same_size: bool, probs: bool = False,
                 low_scores: str | None = None) -> None:
    """The network's ``result`` -> uint8 (N, H, W) ``ids`` (and ``scores`` when it gives scores).
    ``low_scores``: the graph's own scores at 1/8 of the input, which ``result`` enlarges: the
    ``scores`` output as they are."""
    from onnx import TensorProto

    if g.output == "ids":
        x = b.op("Cast", [result], to=TensorProto.UINT8)
        x = b.squeeze1(x) if len(g.output_shape) == 4 else x
        if same_size:
            b.op("Identity", [x], IDS)
        else:  # ids at another size (a 1/4-size ArgMax, say): enlarged to the input, nearest
            _nearest_to_input(b, x, IDS)
        return
    x = result if g.output_dtype == "float32" else b.op("Cast", [result], to=TensorProto.FLOAT)
    if low_scores is None:
        _scores_output(b, x, probs)
    else:  # as the network made them (a Resize keeps the type)
        low = low_scores if g.output_dtype == "float32" else b.op("Cast", [low_scores], to=TensorProto.FLOAT)
        _scores_output(b, low, probs, at_eighth=True)
    if not same_size:
        x = _resize_to_input(b, x)
    x = b.op("ArgMax", [x], axis=1, keepdims=0)
    b.op("Cast", [x], IDS, to=TensorProto.UINT8)


def splice(model: Any, g: Any, affine_map: tuple[np.ndarray, np.ndarray], bgr: bool, opset: int,
           same_size: bool, probs: bool = False, low_scores: str | None = None) -> None:
    """Turn ``model`` (an ``onnx.ModelProto`` described by ``g``, a ForeignGraph) into rtseg's
    contract in place: ``images`` in, ``ids`` (and, for scores, ``scores``) out, the foreign input
    and output inside. ``probs``: the scores are probabilities (the model ends in a Softmax).
    ``low_scores``: the graph's own scores at 1/8 of the input, before its last Resize (see
    ``_postprocess``)."""
    from onnx import TensorProto, helper

    names = Names(model)
    fin, fout = g.input_name, g.output_name
    for taken in (IMAGES, IDS, SCORES):  # free rtseg's names if the foreign graph uses them
        if taken in names.used:
            new = names.fresh(f"foreign_{taken}")
            rename(model, taken, new)
            fin, fout = (new if fin == taken else fin), (new if fout == taken else fout)
    names.used.update((IMAGES, IDS, SCORES))
    pre, post = _Builder(names, opset), _Builder(names, opset)
    _preprocess(pre, g, affine_map, bgr, fin)
    _postprocess(post, g, fout, same_size, probs, low_scores)

    graph = model.graph
    n = g.batch if g.batch is not None else "batch"
    h, w = (v if v is not None else name for v, name in zip(g.size, ("height", "width")))
    kept_inputs = [v for v in graph.input if v.name != fin]  # initializers listed as inputs (IR < 4)
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(IMAGES, TensorProto.UINT8, [n, h, w, 3]), *kept_inputs])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(IDS, TensorProto.UINT8, [n, h, w]))
    if g.output == "scores":
        graph.output.append(helper.make_tensor_value_info(SCORES, TensorProto.FLOAT16,
                                                          [n, g.num_classes, "scores_height", "scores_width"]))
    nodes = [*pre.nodes, *graph.node, *post.nodes]  # topological order: before, the network, after
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend([*pre.inits, *post.inits])
