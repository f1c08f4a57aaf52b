"""The normalisation folded into the first convolution (rtseg.export.fold): the same outputs as
the graph before, on ONNX Runtime in fp32, border pixels included, for each form of the fold."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rtseg.export.fold import fold_input_affine  # noqa: E402
from rtseg.export.foreign_nodes import affine  # noqa: E402

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _graph(norm, *, pads, stride=1, after="Conv", fanout=False) -> onnx.ModelProto:
    """uint8 NHWC images -> Cast -> Transpose -> 1x1 affine Conv -> ``after`` (a 3x3 conv with
    ``pads``) -> Relu -> output; ``fanout``: the normalised image is also an output."""
    rng = np.random.default_rng(0)
    weight, bias = affine(3, *norm, bgr=False)
    inits = [numpy_helper.from_array(weight[:, :, None, None], "norm_w"), numpy_helper.from_array(bias, "norm_b"),
             numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "k"),
             numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "kb")]
    nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "norm_w", "norm_b"], ["normed"], kernel_shape=[1, 1])]
    if after == "Conv":
        nodes.append(helper.make_node("Conv", ["normed", "k", "kb"], ["y"], kernel_shape=[3, 3], pads=[pads] * 4,
                                      strides=[stride, stride]))
    else:
        nodes.append(helper.make_node(after, ["normed"], ["y"]))
    nodes.append(helper.make_node("Relu", ["y"], ["out"]))
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, None, None])]
    if fanout:
        outputs.append(helper.make_tensor_value_info("normed", TensorProto.FLOAT, [1, 3, 20, 28]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 20, 28, 3])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["out"], {"images": images})[0]


@pytest.fixture
def images() -> np.ndarray:
    # Saturated edges too: the border pixels are where a wrong fold shows.
    img = np.random.default_rng(1).integers(0, 256, (1, 20, 28, 3), dtype=np.uint8)
    img[0, 0], img[0, :, -1] = 255, 0
    return img


@pytest.mark.parametrize("norm,pads,stride,sub", [
    (IMAGENET, 1, 1, True),  # padded, with a shift: the shift stays in front as a Sub
    (IMAGENET, 1, 2, True),  # Fast-SCNN's first conv (stride 2, padded)
    (IMAGENET, 0, 1, False),  # no padding: all of it into the weights and bias
    (UNIT, 1, 2, False),  # x/255 (ultralytics): no shift, nothing left in front
])
def test_fold_gives_the_same_outputs(images, norm, pads, stride, sub):
    before = _graph(norm, pads=pads, stride=stride)
    after = _graph(norm, pads=pads, stride=stride)
    assert fold_input_affine(after)
    onnx.checker.check_model(after, full_check=True)
    ops = [n.op_type for n in after.graph.node]
    assert ops.count("Conv") == 1 and ("Sub" in ops) == sub
    assert {i.name for i in after.graph.initializer}.isdisjoint({"norm_w", "norm_b"})  # the affine's are gone
    want, got = _run(before, images), _run(after, images)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert np.abs(want).max() > 0.1  # the outputs are not all zero (Relu): the comparison means something


def test_shift_in_the_bias_would_be_wrong_at_the_border(images):
    # Why the padded case keeps a Sub: folding the shift into the bias changes the border pixels.
    before = _graph(IMAGENET, pads=1)
    naive = _graph(IMAGENET, pads=0)  # the same weights, folded fully, then padded by hand below
    assert fold_input_affine(naive)
    conv = next(n for n in naive.graph.node if n.op_type == "Conv")
    del conv.attribute[:]
    conv.attribute.extend([helper.make_attribute("kernel_shape", [3, 3]), helper.make_attribute("pads", [1] * 4)])
    want, got = _run(before, images), _run(naive, images)
    assert not np.allclose(got[..., 0, :], want[..., 0, :], atol=1e-3)  # the top row differs
    np.testing.assert_allclose(got[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-4)  # inside agrees


@pytest.mark.parametrize("kwargs", [{"after": "Relu", "pads": 1}, {"fanout": True, "pads": 1}])
def test_other_graphs_are_left_alone(kwargs):
    model = _graph(IMAGENET, **kwargs)
    before = model.SerializeToString()
    assert not fold_input_affine(model)
    assert model.SerializeToString() == before


def test_a_bias_computed_in_the_graph_is_left_alone():
    # The first conv's bias made by a node (not a stored constant) cannot be folded into: unchanged.
    model = _graph(IMAGENET, pads=0)
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[1] == "k")
    model.graph.node.insert(0, helper.make_node("Identity", ["kb"], ["kb_made"]))
    conv.input[2] = "kb_made"
    before = model.SerializeToString()
    assert not fold_input_affine(model)
    assert model.SerializeToString() == before
