"""The Resize + ArgMax tail of an rtseg ONNX file, found, cut off and rebuilt on its own, so that ONNX
Runtime runs the network alone and :func:`rtseg.engines.host_ids.ids_from_scores` makes the ids
(the same ids: see that module). The ONNX counterpart of ``host_ids.openvino_tail``.

A tail is ``ids = Cast(uint8, ArgMax(axis=1, keepdims=0, Resize(linear, half-pixel, scores)))``,
as rtseg's exports and its wraps of other tools' files end. Its scale is known only when the
network runs (a dynamic file's scores follow the input's size), so the engine checks it then.
"""
from __future__ import annotations

from typing import Any

from rtseg.engines.host_ids import HALF_PIXEL
from rtseg.export.trt_graph import node_attr as _attr  # an ONNX node's attribute, strings decoded

__all__ = ["onnx_tail", "cut_tail", "tail_model"]


def onnx_tail(model: Any, ids_name: str = "ids") -> tuple[str, list[Any]] | None:
    """(the name of the scores the tail enlarges, its nodes) where ``model`` (an ``onnx.ModelProto``)
    makes ``ids_name`` as a tail the host can make; None for any other ending."""
    from onnx import TensorProto

    graph = model.graph
    if ids_name not in [o.name for o in graph.output] or any(a.g.node or a.graphs for n in graph.node for a in n.attribute):
        return None  # no ids output, or a graph with subgraphs (If, Loop): left whole
    producer = {o: n for n in graph.node for o in n.output}
    cast = producer.get(ids_name)
    if cast is None or cast.op_type != "Cast" or _attr(cast, "to") != TensorProto.UINT8:
        return None
    argmax = producer.get(cast.input[0])
    if (argmax is None or argmax.op_type != "ArgMax" or _attr(argmax, "axis", 0) != 1
            or _attr(argmax, "keepdims", 1) != 0 or _attr(argmax, "select_last_index", 0) != 0):
        return None
    resize = producer.get(argmax.input[0])
    if (resize is None or resize.op_type != "Resize" or _attr(resize, "mode", "nearest") != "linear"
            or _attr(resize, "coordinate_transformation_mode", "half_pixel") not in HALF_PIXEL
            or _attr(resize, "antialias", 0) or _attr(resize, "axes") is not None):
        return None
    tail = [resize, argmax, cast]
    users = [n for n in graph.node if n not in tail and any(i in (resize.output[0], argmax.output[0]) for i in n.input)]
    if users or argmax.output[0] in [o.name for o in graph.output]:
        return None  # the enlarged scores or the raw ArgMax are used elsewhere: the tail is not only the ids'
    return resize.input[0], tail


def cut_tail(model: Any, ids_name: str = "ids") -> tuple[bytes, str] | None:
    """``model`` without its tail, as bytes for an ``InferenceSession``: the enlarged scores' input
    as its first output (float), its other outputs (the ``scores``) after it, and only the nodes and
    initializers those need. With the scores' name; None where :func:`onnx_tail` finds no tail."""
    import onnx

    found = onnx_tail(model, ids_name)
    if found is None:
        return None
    low, _ = found
    typed = onnx.shape_inference.infer_shapes(model)
    info = next((v for v in [*typed.graph.value_info, *typed.graph.input] if v.name == low), None)
    if info is None or info.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        return None  # float16 scores (a half-precision file) or unknown: left whole
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    graph = cut.graph
    outputs = [onnx.helper.make_tensor_value_info(low, onnx.TensorProto.FLOAT, None)]
    outputs += [o for o in graph.output if o.name != ids_name]
    needed, kept = {o.name for o in outputs}, []
    for node in reversed(list(graph.node)):  # a valid graph lists its nodes in order: walk back from the outputs
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    del graph.output[:]
    graph.output.extend(outputs)
    return cut.SerializeToString(), low


def tail_model(classes: int, low: tuple[int, int], scale: tuple[int, int]) -> bytes:
    """The tail on its own, for the frames too speckled for the host: float scores (1, C, h, w) ->
    uint8 ids (1, h * sy, w * sx) by a linear half-pixel Resize and an ArgMax, as ONNX bytes."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    (h, w), (sy, sx) = low, scale
    sizes = numpy_helper.from_array(np.array([1, classes, h * sy, w * sx], np.int64), "sizes")
    nodes = [helper.make_node("Resize", ["scores", "", "", "sizes"], ["up"], mode="linear",
                              coordinate_transformation_mode="half_pixel"),
             helper.make_node("ArgMax", ["up"], ["best"], axis=1, keepdims=0),
             helper.make_node("Cast", ["best"], ["ids"], to=TensorProto.UINT8)]
    graph = helper.make_graph(nodes, "rtseg_tail", [helper.make_tensor_value_info("scores", TensorProto.FLOAT,
                                                                                   [1, classes, h, w])],
                              [helper.make_tensor_value_info("ids", TensorProto.UINT8, [1, h * sy, w * sx])], [sizes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)  # any ORT since 1.10
    return model.SerializeToString()
