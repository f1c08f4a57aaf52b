"""At what size a foreign graph gives its output, read from its shapes, for the wrap
(:func:`rtseg.export.foreign.wrap_foreign`): whether scores or ids come out at the input's size
(else the wrap enlarges them), and where a graph makes its scores at 1/8 and enlarges them itself.
``g`` is the graph's :class:`~rtseg.export.foreign.ForeignGraph`."""
from __future__ import annotations

from typing import Any

from rtseg.export.foreign_nodes import STRIDE

__all__ = ["same_size", "eighth_scores", "ids_same_size", "KEEPS_CLASSES"]

KEEPS_CLASSES = {"Cast", "Identity", "Resize", "Upsample", "Softmax", "LogSoftmax", "Sigmoid", "Relu", "Squeeze",
                 "Unsqueeze", "Reshape", "Flatten"}  # ops between a head's last Conv and the output

_SHAPE_OPS = {"Shape", "Slice", "Gather", "Concat", "Cast", "Constant", "Unsqueeze", "Squeeze", "Identity", "Reshape"}


def same_size(g: Any, model: Any) -> bool:
    """True when the scores come out at the input's H x W, so no Resize is needed: read from
    static shapes, or, for dynamic ones, from the graph's last Resize taking its sizes from the
    input's own shape (``F.interpolate(logits, size=x.shape[2:])``) with no arithmetic between.
    (ONNX Runtime's symbolic shape inference would prove more, but takes half a minute on a
    Fast-SCNN.) Wrong only towards keeping a Resize, which at equal sizes is a copy."""
    out = tuple(g.output_shape[2:])
    if None not in g.size and out == g.size:
        return True
    if not g.dynamic:
        return False
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer.get(g.output_name)
    while node is not None and node.op_type in KEEPS_CLASSES - {"Resize", "Upsample"}:
        node = producer.get(node.input[0])
    if node is None or node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
        return False
    todo, seen, shapes_of = [node.input[3]], set(), set()
    while todo:  # every tensor the sizes are computed from
        name = todo.pop()
        if name in seen or name not in producer:
            continue
        seen.add(name)
        up = producer[name]
        if up.op_type not in _SHAPE_OPS:
            return False
        if up.op_type == "Shape":
            shapes_of.add(up.input[0])
        else:
            todo.extend(i for i in up.input if i)
    return g.input_name in shapes_of and shapes_of <= {g.input_name, node.input[0]}


def eighth_scores(g: Any, model: Any) -> str | None:
    """The tensor the graph's last Resize enlarges, where static shapes show it at 1/8 of the input:
    the model's own low-resolution scores (ultralytics' yolo26-sem enlarges its 1/8 logits to the
    input size), which the ``scores`` output then gives as they are, rather than the enlarged scores
    made small again. None otherwise (the output is resized to 1/8, as before)."""
    import onnx

    if g.output != "scores" or None in g.size:
        return None
    node = next((n for n in model.graph.node if g.output_name in n.output), None)
    if node is None or node.op_type not in ("Resize", "Upsample") or not node.input:
        return None
    low = node.input[0]
    inferred = onnx.shape_inference.infer_shapes(model)
    found = next((v for v in [*inferred.graph.value_info, *inferred.graph.output] if v.name == low), None)
    if found is None:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in found.type.tensor_type.shape.dim]
    eighth = [max(1, v // STRIDE) for v in g.size]
    classes = g.output_shape[1] if len(g.output_shape) == 4 else None
    if len(dims) != 4 or dims[2:] != eighth or dims[1] is None or dims[1] != classes:
        return None
    return low


def ids_same_size(g: Any) -> bool:
    """True when static shapes show the ids at the input's H x W; otherwise (another size, or
    dynamic) the wrap enlarges them, which at equal sizes is a copy of a uint8 map."""
    return None not in g.size and tuple(g.output_shape[-2:]) == tuple(g.size)
