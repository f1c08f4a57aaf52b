"""Foreign ONNX segmentation models (rtseg.export.foreign): files made here the way torch.onnx,
mmdeploy and jetson-inference ship them, wrapped into rtseg artifacts. For each, the ids the
wrapped graph gives in ONNX Runtime agree with ONNX Runtime on the raw file fed the same
preprocessing by hand in numpy, on real street frames; and the bad inputs give one-line errors."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from rtseg.bundled import BENCH_FRAME, DEFAULT_WEIGHTS, DEMO_CLIP
from rtseg.errors import RtsegError
from rtseg.export.foreign import NORMALIZATIONS, inspect_onnx, wrap_foreign
from rtseg.formats.checkpoint import build_from_checkpoint
from rtseg.formats.onnx_meta import read_onnx_meta

MIN_AGREEMENT = 0.999


class Tiny(nn.Module):
    """A small random convnet: ``stride`` (1, 2, 4, 8) of downsampling, ``classes`` score maps,
    optionally enlarged back to the input size (``upsample``) and argmaxed (``ids``: a dtype)."""

    def __init__(self, classes: int, stride: int = 1, *, in_ch: int = 3, upsample: bool = False,
                 ids: torch.dtype | None = None, nhwc_uint8: bool = False):
        super().__init__()
        layers, ch = [nn.Conv2d(in_ch, 16, 3, padding=1), nn.ReLU()], 16
        for _ in range(int(np.log2(stride))):
            layers += [nn.Conv2d(ch, 24, 3, stride=2, padding=1), nn.ReLU()]
            ch = 24
        self.body = nn.Sequential(*layers, nn.Conv2d(ch, classes, 1))
        self.upsample, self.ids, self.nhwc_uint8 = upsample, ids, nhwc_uint8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc_uint8:  # a graph that normalises its own uint8 pixels (TF / jetson style)
            x = x.permute(0, 3, 1, 2).float() / 255.0
        y = self.body(x)
        if self.upsample:
            y = F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)
        return y if self.ids is None else y.argmax(1).to(self.ids)


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    example: tuple[int, ...]  # the export's input shape
    dtype: torch.dtype = torch.float32
    dynamic: bool = False  # batch, H and W dynamic
    kw: tuple = ()  # wrap_foreign options
    sizes: tuple[tuple[int, int], ...] = ((256, 320),)  # (h, w) the frames are fed at
    feed: str = "nchw"  # how the raw file takes them: nchw (normalised RGB), nhwc_bgr_uint8, grey


def _shipped() -> nn.Module:
    torch.manual_seed(0)
    from rtseg.nets import create_model

    return build_from_checkpoint(DEFAULT_WEIGHTS)[0] if DEFAULT_WEIGHTS.is_file() else \
        create_model("fastscnn", num_classes=11).eval()


def _seeded(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return make().eval()
    return build


CASES = {
    # the shipped weights through plain torch.onnx: float input, logits at the input size, dynamic H/W
    "fastscnn_logits_dynamic": Case(_shipped, (1, 3, 256, 320), dynamic=True,
                                    kw=(("classes", "camvid"), ("normalize", "imagenet")),
                                    sizes=((256, 320), (192, 352))),
    # mmdeploy-style int64 ids N x 1 x H x W at a fixed size (made from the file above: _with_argmax)
    "fastscnn_ids_int64": Case(_shipped, (1, 3, 256, 320), kw=(("classes", "camvid"),)),
    "logits_quarter_150": Case(_seeded(lambda: Tiny(150, 4)), (1, 3, 256, 320), dynamic=True,
                               sizes=((128, 160), (96, 192))),
    "logits_eighth_19": Case(_seeded(lambda: Tiny(19, 8)), (1, 3, 256, 512), sizes=((256, 512),)),
    "ids_int32": Case(_seeded(lambda: Tiny(21, 2, upsample=True, ids=torch.int32)), (1, 3, 256, 320),
                      dynamic=True),
    # ids at 1/4 of the input (an ArgMax before any upsample): the wrap enlarges them, nearest
    "ids_quarter_int64": Case(_seeded(lambda: Tiny(19, 4, ids=torch.int64)), (1, 3, 256, 320), dynamic=True,
                              sizes=((256, 320), (128, 192))),
    "nhwc_uint8_bgr": Case(_seeded(lambda: Tiny(11, 2, upsample=True, nhwc_uint8=True)), (1, 256, 320, 3),
                           dtype=torch.uint8, kw=(("bgr", True), ("classes", "camvid")), feed="nhwc_bgr_uint8"),
    "fp16_symmetric": Case(_seeded(lambda: Tiny(11, 2).half()), (1, 3, 256, 320), dtype=torch.float16,
                           dynamic=True, kw=(("normalize", "symmetric"),)),
    "grey_unit_7": Case(_seeded(lambda: Tiny(7, 2, in_ch=1)), (1, 1, 256, 320), kw=(("normalize", "unit"),),
                        feed="grey"),
}


def _export(net: nn.Module, path: Path, example: torch.Tensor | tuple, *, dynamic: bool,
            names: tuple[list[str], list[str]] = (["input"], ["output"])) -> Path:
    axes = None
    if dynamic:
        axes = {names[0][0]: {0: "batch", 2: "height", 3: "width"}, names[1][0]: {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(net, example if isinstance(example, tuple) else (example,), str(path), input_names=names[0], output_names=names[1],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def _with_argmax(src: Path, dst: Path, shape: tuple[int, ...]) -> Path:
    """``src`` (logits N x C x H x W) with mmdeploy's ending: ArgMax(keepdims=1), int64 ids
    N x 1 x H x W, and the input fixed at ``shape``."""
    model = onnx.load(str(src))
    logits = model.graph.output[0].name
    model.graph.node.append(onnx.helper.make_node("ArgMax", [logits], ["output_ids"], axis=1, keepdims=1))
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_tensor_value_info("output_ids", onnx.TensorProto.INT64,
                                                                 [shape[0], 1, *shape[2:]]))
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):
        dim.dim_value = value
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Real street frames: the benchmark frame and two frames of the demo clip."""
    found = [cv2.imread(str(BENCH_FRAME))]
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    for index in (0, 60):
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
        if ok:
            found.append(frame)
    cap.release()
    assert all(f is not None for f in found), "the bundled street frame is missing"
    return found


def _feed(frame: np.ndarray, case: Case, g) -> np.ndarray:
    """By hand in numpy: what the raw file takes for one BGR frame."""
    if case.feed == "nhwc_bgr_uint8":
        return frame[None]
    rgb = frame[..., ::-1].astype(np.float64) / 255.0
    mean, std = NORMALIZATIONS[_norm(case)]
    if case.feed == "grey":
        grey = rgb @ np.array([0.299, 0.587, 0.114])
        x = (grey - np.dot([0.299, 0.587, 0.114], mean)) / np.dot([0.299, 0.587, 0.114], std)
        return x[None, None].astype(np.float32)
    x = (rgb - np.array(mean)) / np.array(std)
    return x.transpose(2, 0, 1)[None].astype(np.float16 if g.dtype == "float16" else np.float32)


def _norm(case: Case) -> str:
    return dict(case.kw).get("normalize", "imagenet")


def _bilinear(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> (C, H, W), bilinear with half-pixel centres and clamped edges (ONNX Resize's
    linear/half_pixel, F.interpolate(align_corners=False)), one axis at a time."""
    for axis, n in ((1, size[0]), (2, size[1])):
        m = scores.shape[axis]
        src = np.clip((np.arange(n) + 0.5) * m / n - 0.5, 0, m - 1)
        lo = np.floor(src).astype(int)
        hi, frac = np.minimum(lo + 1, m - 1), (src - lo).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = n
        frac = frac.reshape(shape)
        scores = np.take(scores, lo, axis) * (1 - frac) + np.take(scores, hi, axis) * frac
    return scores


def _decode(out: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """By hand in numpy: the raw output -> (H, W) ids (scores enlarged bilinearly, then argmax)."""
    if out.dtype.kind in "iu":
        ids = out.reshape(out.shape[-2:]).astype(np.uint8)
        # ids at another size: nearest, floor(x * h / H), as OpenCV's INTER_NEAREST
        return ids if ids.shape == size else cv2.resize(ids, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    scores = out[0].astype(np.float32)  # (C, h, w)
    if scores.shape[1:] != size:
        scores = _bilinear(scores, size)
    return scores.argmax(0)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Callable[[str], tuple[Path, Path]]:
    """``made(name)`` -> (raw file, wrapped artifact) of a case, made once."""
    folder, done = tmp_path_factory.mktemp("foreign"), {}

    def make(name: str) -> tuple[Path, Path]:
        if name not in done:
            case = CASES[name]
            if name == "fastscnn_ids_int64":  # one Fast-SCNN export (seconds) serves both
                raw = _with_argmax(make("fastscnn_logits_dynamic")[0], folder / f"{name}.onnx", case.example)
            else:
                raw = _export(case.make(), folder / f"{name}.onnx", torch.zeros(case.example, dtype=case.dtype),
                              dynamic=case.dynamic)
            done[name] = raw, wrap_foreign(raw, folder / f"{name}_rtseg.onnx", **dict(case.kw))
        return done[name]
    return make


@pytest.mark.parametrize("name", list(CASES))
def test_wrapped_ids_agree_with_the_raw_file(made, frames, name):
    case = CASES[name]
    raw, wrapped = made(name)
    g = inspect_onnx(raw)
    raw_sess = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
    wrapped_sess = ort.InferenceSession(str(wrapped), providers=["CPUExecutionProvider"])
    inp = wrapped_sess.get_inputs()[0]
    assert (inp.name, inp.type, wrapped_sess.get_outputs()[0].name) == ("images", "tensor(uint8)", "ids")
    assert all(isinstance(d, str) for d in inp.shape[1:3]) == case.dynamic  # dynamic H/W stay dynamic
    same = total = 0
    for h, w in case.sizes:
        for frame in frames:
            small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            want = _decode(raw_sess.run(None, {g.input_name: _feed(small, case, g)})[0], (h, w))
            got = wrapped_sess.run(["ids"], {"images": small[None]})[0]
            assert got.dtype == np.uint8 and got.shape == (1, h, w)
            same, total = same + int((got[0] == want).sum()), total + want.size
    print(f"{name}: ids agree on {100 * same / total:.4f}% of {total} pixels")
    assert same / total >= MIN_AGREEMENT


def test_metadata_and_inspection(made):
    raw, wrapped = made("fastscnn_logits_dynamic")
    g = inspect_onnx(raw)
    assert (g.layout, g.dtype, g.channels, g.batch, g.size, g.output, g.num_classes) == \
        ("nchw", "float32", 3, None, (None, None), "scores", 11)
    meta = read_onnx_meta(wrapped)
    assert meta.model == f"foreign:{raw.name}" and meta.dataset == "camvid" and meta.num_classes == 11
    assert meta.input_size == (360, 480) and meta.extra["export"]["dynamic"] is True
    assert meta.extra["foreign"]["normalize"] == "imagenet" and meta.extra["ignore_index"] == 11
    # scores already at the input size: symbolic shape inference spares the Resize before the ArgMax
    # (the one Resize left makes the 1/8 scores output)
    graph = onnx.load(str(wrapped)).graph
    producer = {o: n for n in graph.node for o in n.output}
    argmax = next(n for n in graph.node if n.op_type == "ArgMax" and n.name.startswith("rtseg_"))
    assert not producer[argmax.input[0]].name.startswith("rtseg_")  # the network's own output, as it is
    ids_g = inspect_onnx(made("ids_int32")[0])
    assert (ids_g.output, ids_g.output_dtype, ids_g.num_classes) == ("ids", "int32", 21)  # read from its ArgMax
    assert read_onnx_meta(made("ids_int32")[1]).dataset == "voc"
    assert read_onnx_meta(made("logits_quarter_150")[1]).dataset == "ade20k"
    assert read_onnx_meta(made("logits_eighth_19")[1]).input_size == (256, 512)  # its fixed size
    assert read_onnx_meta(made("grey_unit_7")[1]).class_names[6] == "class 6"


def test_wrapped_artifact_runs_in_rtseg_engine(made, frames):
    from rtseg.engines.ort_engine import OrtEngine

    engine = OrtEngine(made("fastscnn_logits_dynamic")[1], size=(192, 256))
    assert engine.input_size == (192, 256) and engine.meta.class_names[0] == "Sky"
    ids = engine.predict(frames[1])
    assert ids.shape == frames[1].shape[:2] and ids.dtype == np.uint8 and ids.max() < 11


def test_guessing_says_so_in_one_line(made, tmp_path):
    raw = made("logits_eighth_19")[0]
    notes: list[str] = []
    meta = read_onnx_meta(wrap_foreign(raw, tmp_path / "w.onnx", note=notes.append))
    assert meta.dataset == "cityscapes" and len(notes) == 1 and "19 classes" in notes[0] and "\n" not in notes[0]


# --- errors: one line each, nothing written ---------------------------------------------------------

def _one_line_error(fn, match: str) -> str:
    with pytest.raises(RtsegError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, stride=4), nn.Linear(8, 1000)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


class TwoInOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, x, y):
        return self.conv(x + y), self.conv(x)


def test_classifier_is_not_a_segmentation_model(tmp_path):
    raw = _export(Classifier().eval(), tmp_path / "cls.onnx", torch.zeros(1, 3, 64, 64), dynamic=False)
    _one_line_error(lambda: inspect_onnx(raw), r"\[1, 1000\]\) is not a segmentation output")
    _one_line_error(lambda: wrap_foreign(raw, tmp_path / "out.onnx"), "not a segmentation output")
    assert not (tmp_path / "out.onnx").exists()


def test_corrupt_and_truncated_files(tmp_path, made):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 50)
    _one_line_error(lambda: inspect_onnx(junk), "not a (readable|usable|valid) ONNX")
    data = made("logits_eighth_19")[0].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_error(lambda: inspect_onnx(cut), "not a (readable|usable|valid) ONNX")
    _one_line_error(lambda: inspect_onnx(tmp_path / "absent.onnx"), "not found")


def test_input_channels_must_be_1_or_3(tmp_path):
    raw = _export(Tiny(5, in_ch=4).eval(), tmp_path / "rgba.onnx", torch.zeros(1, 4, 64, 64), dynamic=False)
    _one_line_error(lambda: inspect_onnx(raw), "has 4 channels .* rtseg feeds 1 .* or 3")


def test_several_inputs_and_outputs_need_a_name(tmp_path):
    raw = _export(TwoInOut().eval(), tmp_path / "two.onnx", (torch.zeros(1, 3, 32, 32),) * 2, dynamic=False,
                  names=(["x"], ["a", "b"]))
    # torch names the second input itself; the listing shows every name and shape
    msg = _one_line_error(lambda: inspect_onnx(raw), "2 inputs; choose one with --input-name")
    assert "'x' float32 [1, 3, 32, 32]" in msg
    g_name = onnx.load(str(raw)).graph.input[1].name
    msg = _one_line_error(lambda: inspect_onnx(raw, input_name="x"), "2 outputs; choose one with --output-name")
    assert "'a'" in msg and "'b'" in msg
    g = inspect_onnx(raw, input_name="x", output_name="b")
    assert (g.output_name, g.num_classes) == ("b", 5)
    _one_line_error(lambda: inspect_onnx(raw, input_name="nope"), "no input named 'nope'")
    _one_line_error(lambda: wrap_foreign(raw, tmp_path / "o.onnx", input_name="x", output_name="b"),
                    "other inputs besides 'x'")
    assert g_name != "x"


def test_flag_errors(made, tmp_path):
    raw = made("logits_eighth_19")[0]
    out = tmp_path / "o.onnx"
    _one_line_error(lambda: wrap_foreign(raw, out, classes="voc"), "--classes voc has 21 classes but .* 19")
    _one_line_error(lambda: wrap_foreign(raw, out, classes="mapillary"), "unknown --classes 'mapillary'")
    _one_line_error(lambda: wrap_foreign(raw, out, normalize="zscore"), "unknown --normalize 'zscore'")
    _one_line_error(lambda: wrap_foreign(made("nhwc_uint8_bgr")[0], out, normalize="imagenet"),
                    "takes uint8 pixels")
    _one_line_error(lambda: wrap_foreign(made("logits_eighth_19")[1], out), "already an rtseg artifact")
    custom = onnx.load(str(raw))
    custom.graph.node[1].domain = "mmdeploy"  # as mmdeploy's TensorRT-only ops are
    custom.opset_import.append(onnx.helper.make_opsetid("mmdeploy", 1))
    onnx.save(custom, str(tmp_path / "custom.onnx"))
    _one_line_error(lambda: wrap_foreign(tmp_path / "custom.onnx", out), "operators outside standard ONNX .*mmdeploy::")
    assert not out.exists()


class SoftmaxTiny(nn.Module):
    """Tiny's scores as probabilities (a model that ends in a Softmax)."""

    def __init__(self):
        super().__init__()
        self.net = Tiny(11, 2, upsample=True)

    def forward(self, x):
        return torch.softmax(self.net(x), dim=1)


@pytest.mark.parametrize("name", ["fastscnn_logits_dynamic", "logits_quarter_150", "probs", "ids_int32"])
def test_the_scores_output_agrees_with_the_ids(made, frames, tmp_path, name):
    """A wrapped model with scores gets rtseg's second output for the temporal filter: fp16 scores
    at 1/8 of the input whose enlarged argmax is the ids (logits, or the log of probabilities, so
    that the filter's softmax gives them back); a model of ids at the input size gets the scores
    its ArgMax read (#39)."""
    from tests.engines.test_scores import enlarged_argmax

    if name == "probs":
        raw = _export(_seeded(SoftmaxTiny)(), tmp_path / "probs.onnx", torch.zeros(1, 3, 256, 320), dynamic=False)
        wrapped = wrap_foreign(raw, tmp_path / "probs_rtseg.onnx", classes="camvid")
    else:
        raw, wrapped = made(name)
    sess = ort.InferenceSession(str(wrapped), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["ids", "scores"]  # ids_int32 too: the scores before its ArgMax
    h, w = 256, 320
    small = cv2.resize(frames[0], (w, h), interpolation=cv2.INTER_AREA)
    ids, scores = sess.run(["ids", "scores"], {"images": small[None]})
    assert scores.dtype == np.float16 and scores.shape[2:] == (h // 8, w // 8)
    if name == "probs":  # log-probabilities: at most 0, and exp of them sums to about 1
        assert scores.max() <= 0.01 and np.allclose(np.exp(scores.astype(np.float32)).sum(1), 1, atol=0.05)
    agree = float(np.mean(enlarged_argmax(scores[0], (h, w)) == ids[0]))
    print(f"{name}: enlarged 1/8 scores agree with the ids on {agree:.4f}")
    assert agree >= 0.85  # a 1/8 summary of the model's own scores: its borders move, its regions hold


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])  # the runtimes a .onnx runs on
def test_a_wrapped_models_scores_reach_every_runtime(made, frames, runtime):
    """The wrap's scores through each runtime rtseg runs a foreign .onnx on (what --temporal on
    feeds the filter): the same 1/8 shape as ONNX Runtime's own session gives, nearly the same
    values, and ids that agree with them."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    from rtseg.engines import open_engine
    from tests.engines.test_scores import enlarged_argmax

    _, wrapped = made("logits_quarter_150")
    h, w = 128, 160
    small = cv2.resize(frames[0], (w, h), interpolation=cv2.INTER_AREA)
    ref = ort.InferenceSession(str(wrapped), providers=["CPUExecutionProvider"]).run(["scores"],
                                                                                      {"images": small[None]})[0]
    engine = open_engine(wrapped, runtime=runtime, size=(h, w), note=lambda _: None)
    assert engine.has_scores
    ids, scores = engine.infer_scores(small[None])
    assert scores.shape == ref.shape == (1, 150, h // 8, w // 8)
    assert np.abs(scores.astype(np.float32) - ref.astype(np.float32)).max() < 0.05
    assert float(np.mean(enlarged_argmax(scores[0], (h, w)) == ids[0])) >= 0.85
