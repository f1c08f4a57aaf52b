"""The ONNX graph TensorRT parses: rewrite rtseg's exported graph so TensorRT accepts its uint8
I/O (:func:`prepare_onnx_for_tensorrt`) and check it against what TensorRT 10/11 implement
(:func:`check_onnx_for_tensorrt`). Pure ONNX: runs, and is tested, without TensorRT or a GPU.
"""
from __future__ import annotations

from typing import Any

__all__ = ["prepare_onnx_for_tensorrt", "check_onnx_for_tensorrt", "TRT_ONNX_OPS", "TRT_OPSET_RANGE", "node_attr"]

# Opsets the ONNX-TensorRT parser accepts in every TensorRT 10.x (10.0 documents 9..20; later
# 10.x and 11.x accept more, never less).
TRT_OPSET_RANGE = (9, 20)

# ONNX operators the ONNX-TensorRT parser supports (onnx-tensorrt docs/operators.md, TensorRT
# 10.x support matrix), limited to those already listed for 10.0 so that a plan builds on any
# 10.x or 11.x. Types matter too: see check_onnx_for_tensorrt for the uint8 rule.
TRT_ONNX_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor
Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax
Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod
Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size
Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu
Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


def _consumers(graph: Any, name: str) -> list[Any]:
    return [n for n in graph.node if name in n.input]


def node_attr(node: Any, name: str, default: Any = None) -> Any:
    """An ONNX node's attribute ``name`` as a Python value (strings decoded), else ``default``."""
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def prepare_onnx_for_tensorrt(model: Any) -> Any:
    """Rewrite the exported graph (in place, and returned) so TensorRT accepts its uint8 I/O.

    TensorRT takes uint8 only as a network input or output, converted by a Cast right there
    (onnx-tensorrt operator matrix: "UINT8 is only supported as network input or output").
    1. The exporter writes ``images -> Transpose -> Cast(float)`` (NHWC->NCHW on the bytes); this
       swaps it to ``images -> Cast -> Transpose``: same result, the transpose now on floats.
    2. ``ArgMax(int64) -> Cast(uint8)`` becomes ``ArgMax -> Cast(float) -> Cast(uint8)``: the
       DataType docs allow uint8 conversions only from/to float or half. Class ids < 256 are exact
       in float; the extra cast is one elementwise pass over (N, H, W).
    """
    import onnx
    from onnx import TensorProto

    graph = model.graph
    for inp in graph.input:
        if inp.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        for tr in _consumers(graph, inp.name):
            if tr.op_type != "Transpose":
                continue
            after = _consumers(graph, tr.output[0])
            if len(after) != 1 or after[0].op_type != "Cast":
                continue
            cast = after[0]
            cast_out, cast_in = cast.output[0], inp.name + "_cast"
            cast.input[0], cast.output[0] = inp.name, cast_in
            tr.input[0], tr.output[0] = cast_in, cast_out
            nodes = list(graph.node)
            i, j = nodes.index(tr), nodes.index(cast)
            nodes[i], nodes[j] = cast, tr  # Cast now first; the Transpose sits where the Cast was
            del graph.node[:]
            graph.node.extend(nodes)

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    for out in graph.output:
        if out.type.tensor_type.elem_type != TensorProto.UINT8:
            continue
        for node in list(graph.node):
            if out.name in node.output and node.op_type == "Cast" and types.get(node.input[0]) not in floats:
                src = node.input[0]
                hop = onnx.helper.make_node("Cast", [src], [src + "_as_float"], to=TensorProto.FLOAT,
                                            name=(node.name or "ids") + "_to_float")
                node.input[0] = src + "_as_float"
                graph.node.insert(list(graph.node).index(node), hop)
    return model


def _static_dims(value_info: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value_info.type.tensor_type.shape.dim]


def check_onnx_for_tensorrt(model: Any, *, size: tuple[int, int] | None = None) -> list[str]:
    """What would stop TensorRT 10/11 from parsing ``model`` as rtseg runs it; [] when nothing.

    Checks: opset in :data:`TRT_OPSET_RANGE`; only operators in :data:`TRT_ONNX_OPS` (default
    domain); Resize attributes TensorRT implements; one uint8 NHWC input and one uint8 NHW output
    with static shapes (at ``size`` when given); uint8 met only by Casts at the network boundary.
    """
    import onnx
    import onnx.numpy_helper
    from onnx import TensorProto

    problems: list[str] = []
    graph = model.graph
    opset = {o.domain: o.version for o in model.opset_import}.get("")
    lo, hi = TRT_OPSET_RANGE
    if opset is None or not lo <= opset <= hi:
        problems.append(f"opset {opset} is outside {lo}..{hi}, the range every TensorRT 10.x parses")
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"node {node.name or node.op_type}: custom domain {node.domain!r}")
        elif node.op_type not in TRT_ONNX_OPS:
            problems.append(f"node {node.name or node.op_type}: operator {node.op_type} is not in TensorRT's ONNX support matrix")
        if node.op_type == "Resize":
            mode = node_attr(node, "mode", "nearest")
            coords = node_attr(node, "coordinate_transformation_mode", "half_pixel")
            if mode not in _RESIZE_MODES or coords not in _RESIZE_COORDS or node_attr(node, "antialias", 0):
                problems.append(f"node {node.name}: Resize mode={mode} coordinate_transformation_mode={coords} "
                                "is not one TensorRT implements")

    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None or zp.data_type != TensorProto.INT8 or onnx.numpy_helper.to_array(zp).any():
            problems.append(f"node {node.name or node.op_type}: TensorRT takes only symmetric int8 Q/DQ "
                            "(an int8 zero point of 0)")
            break  # one line for the whole graph is enough

    if len(graph.input) != 1 or len(graph.output) != 1:
        problems.append(f"expected one input and one output, found {len(graph.input)} and {len(graph.output)}")
        return problems
    inp, out = graph.input[0], graph.output[0]
    in_dims, out_dims = _static_dims(inp), _static_dims(out)
    if inp.type.tensor_type.elem_type != TensorProto.UINT8 or len(in_dims) != 4 or in_dims[3] != 3:
        problems.append(f"input {inp.name} must be uint8 (N, H, W, 3)")
    if out.type.tensor_type.elem_type != TensorProto.UINT8 or len(out_dims) != 3:
        problems.append(f"output {out.name} must be uint8 (N, H, W)")
    if None in in_dims or None in out_dims:
        problems.append(f"shapes must be static: input {in_dims}, output {out_dims} (export with dynamic=False)")
    elif size is not None and (tuple(in_dims[1:3]) != tuple(size) or tuple(out_dims[1:3]) != tuple(size)):
        problems.append(f"shapes {in_dims} -> {out_dims} are not at the export size {size[0]}x{size[1]}")
    for node in _consumers(graph, inp.name):
        if node.op_type != "Cast":
            problems.append(f"the uint8 input feeds {node.op_type} {node.name!r}; TensorRT needs a Cast first "
                            "(run prepare_onnx_for_tensorrt)")
    for node in graph.node:
        if out.name in node.output and node.op_type != "Cast":
            problems.append(f"the uint8 output comes from {node.op_type} {node.name!r}, not a Cast")
    return problems
