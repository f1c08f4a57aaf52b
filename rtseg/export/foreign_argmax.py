"""Scores from a model that ends in an ArgMax: ultralytics' segmentation exports, mmdeploy's
end2end.onnx and others give class ids only (an ArgMax over the class axis, maybe with a Cast or
an Unsqueeze after it), so rtseg had no scores for the temporal filter or the confidence outputs.
At wrap time the ArgMax's input (the class scores) becomes the graph's output instead and rtseg's
own argmax takes the ArgMax's place: the same ids (both take the first of equal scores), and now
the scores beside them."""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["scores_before_argmax"]

_PASS = {"Cast", "Unsqueeze", "Squeeze", "Identity"}  # ops an ids output may go through after its ArgMax


def _producer(model: Any) -> dict[str, Any]:
    return {out: node for node in model.graph.node for out in node.output}


def _inputs(node: Any) -> set[str]:
    """What a node reads, with what the nodes of its subgraphs (If, Loop, Scan) read."""
    names = {i for i in node.input if i}
    for attr in node.attribute:
        for graph in [attr.g] * attr.HasField("g") + list(attr.graphs):
            for sub in graph.node:
                names |= _inputs(sub)
    return names


def _prune(model: Any) -> None:
    """Drop the nodes nothing uses any more (the ArgMax and what followed it)."""
    needed = {o.name for o in model.graph.output}
    keep = []
    for node in reversed(list(model.graph.node)):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed |= _inputs(node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(keep))


def scores_before_argmax(model: Any, output_name: str | None,
                         at_input_size: Callable[[Any, str], bool]) -> tuple[Any, str | None, bool]:
    """``model`` with the scores an ArgMax over axis 1 reads as its output in place of the ids it
    gives (the chosen output, or the only one): (model, the output to read, whether it changed).
    Unchanged where the output does not come from such an ArgMax, the scores' type is unknown, or
    ``at_input_size(changed model, scores)`` says they are not at the input's size: then the ids
    were enlarged, nearest, after the ArgMax, and rtseg enlarging the scores instead would move them."""
    import onnx

    outputs = [o.name for o in model.graph.output]
    name = output_name or (outputs[0] if len(outputs) == 1 else None)
    if name is None or name not in outputs:
        return model, output_name, False
    producer = _producer(model)
    node = producer.get(name)
    while node is not None and node.op_type in _PASS:
        node = producer.get(node.input[0])
    if node is None or node.op_type != "ArgMax":
        return model, output_name, False
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    if axis != 1:  # not the class axis of N x C x H x W scores
        return model, output_name, False
    scores = node.input[0]
    inferred = onnx.shape_inference.infer_shapes(model)
    found = [v for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
             if v.name == scores]
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    if not found or found[0].type.tensor_type.elem_type not in floats or len(found[0].type.tensor_type.shape.dim) != 4:
        return model, output_name, False
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    kept = [o for o in changed.graph.output if o.name != name]
    del changed.graph.output[:]
    changed.graph.output.extend(kept + [found[0]])
    _prune(changed)
    if not at_input_size(changed, scores):
        return model, output_name, False
    return changed, scores, True
