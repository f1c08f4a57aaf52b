"""The scores output (for the temporal filter): on every CPU runtime, the class scores at the
network's own resolution agree with the ids output once enlarged (argmax of the bilinearly
enlarged scores, as the network's own final upsample does), and an ONNX file without them is
refused in one line."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from rtseg.engines import open_engine
from rtseg.errors import RtsegError
from tests.engines.onnx_exports import export_weights

SIZE = (360, 480)
RUNTIMES = ["pytorch", "onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"))]


def enlarged_argmax(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """argmax over classes of (C, h, w) scores bilinearly resized to ``size`` (half-pixel centres)."""
    planes = [cv2.resize(np.ascontiguousarray(c, dtype=np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
              for c in scores]
    return np.argmax(np.stack(planes), axis=0).astype(np.uint8)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_scores_agree_with_ids(runtime, weights, street_frame):
    engine = open_engine(weights, runtime=runtime, size=SIZE)
    assert engine.has_scores
    batch = engine.preprocess([street_frame])
    ids, scores = engine.infer_scores(batch)
    classes = engine.meta.num_classes
    assert ids.shape == (1, *SIZE) and ids.dtype == np.uint8
    assert scores.shape == (1, classes, SIZE[0] // 8, SIZE[1] // 8) and scores.dtype == np.float16
    assert np.array_equal(ids, engine.infer(batch))  # the ids-only call gives the same ids
    agree = float(np.mean(enlarged_argmax(scores[0], SIZE) == ids[0]))
    assert agree >= 0.99, f"{runtime}: enlarged scores agree with the ids on {agree:.4f} of the pixels"


def test_onnx_without_scores_is_refused(weights, tmp_path):
    path = export_weights(weights, tmp_path / "ids_only.onnx", size=SIZE, scores=False)
    engine = open_engine(path, runtime="onnxruntime")
    assert not engine.has_scores
    with pytest.raises(RtsegError, match="--temporal on needs class scores.*'scores' output"):
        engine.infer_scores(engine.preprocess([np.zeros((*SIZE, 3), np.uint8)]))
    assert engine.infer(engine.preprocess([np.zeros((*SIZE, 3), np.uint8)])).shape == (1, *SIZE)
