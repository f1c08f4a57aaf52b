"""A model that ends in an ArgMax (ultralytics' and mmdeploy's exports give ids only): wrapped with
the scores before the ArgMax as its output, rtseg's ids are the model's own, and the scores are
there for the temporal filter and the confidence outputs (#39)."""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import rtseg
from rtseg.export.foreign import wrap_foreign


class _Ids(nn.Module):
    """Random 5-class scores at the input size, then the ArgMax (as uint8 after a Cast, or int64)."""

    def __init__(self, cast: bool):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 5, 1))
        self.cast = cast

    def forward(self, x):
        ids = self.net(x).argmax(1)
        return ids.to(torch.uint8) if self.cast else ids


@pytest.mark.parametrize("cast", [False, True])
def test_the_ids_stay_the_models_own_and_scores_appear(tmp_path, cast):
    raw = tmp_path / "ids.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Ids(cast).eval(), (torch.zeros(1, 3, 48, 64),), str(raw), input_names=["images"],
                          output_names=["ids"], opset_version=17, dynamo=False)
    notes: list[str] = []
    wrapped = wrap_foreign(raw, tmp_path / "w.onnx", classes=None, normalize="unit", note=notes.append)
    assert any("ends in an ArgMax" in n for n in notes)
    engine = rtseg.load_engine(wrapped, runtime="onnxruntime", precision="fp32")
    assert engine.has_scores
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    rgb = frame[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None] / 255  # what the wrapper feeds: RGB, x/255
    own = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"]).run(None, {"images": rgb})[0][0]
    ids, scores = engine.infer_scores(engine.preprocess([frame]))
    assert np.array_equal(ids[0], own.astype(np.uint8)) and scores.shape[1] == 5


class _Eighth(nn.Module):
    """ultralytics' shape: 5-class scores at 1/8 of the input, enlarged to it (bilinear), the ArgMax."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 8, 1), nn.ReLU(), nn.Conv2d(8, 5, 1))

    def low(self, x):
        return self.net(x)

    def forward(self, x):
        up = nn.functional.interpolate(self.net(x), scale_factor=8, mode="bilinear", align_corners=False)  # as ultralytics
        return up.argmax(1)


def test_scores_made_at_an_eighth_are_the_scores_output_as_they_are(tmp_path):
    """The scores output is the model's own 1/8 scores, not its enlarged scores made small again;
    the ids are still the model's own."""
    raw = tmp_path / "eighth.onnx"
    model = _Eighth().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 64, 96),), str(raw), input_names=["images"], output_names=["ids"],
                          opset_version=17, dynamo=False)
    wrapped = wrap_foreign(raw, tmp_path / "w.onnx", classes=None, normalize="unit", note=lambda _: None)
    import onnx

    graph = onnx.load(str(wrapped)).graph
    producer = {o: n for n in graph.node for o in n.output}
    assert producer["scores"].op_type == "Cast" and producer[producer["scores"].input[0]].op_type == "Conv"  # no Resize
    engine = rtseg.load_engine(wrapped, runtime="onnxruntime", precision="fp32")
    frame = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    x = torch.from_numpy(frame[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None].copy() / 255)
    ids, scores = engine.infer_scores(engine.preprocess([frame]))
    with torch.no_grad():
        low, own = model.low(x)[0].numpy(), model(x)[0].numpy()
    assert scores.shape == (1, 5, 8, 12)
    np.testing.assert_allclose(scores[0].astype(np.float32), low, rtol=2e-3, atol=2e-3)  # fp16 output
    assert (ids[0] == own).mean() > 0.999  # torch vs ONNX Runtime, fp32
