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
