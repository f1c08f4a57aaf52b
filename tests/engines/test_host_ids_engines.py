"""OpenVINO and ONNX Runtime make the ids on the host from their graph's 1/8 scores
(rtseg.engines.host_ids) where the graph ends in a bilinear Resize and an ArgMax: the same ids as
the uncut graph (fp32 pinned: ids are compared), the same scores, at a fixed and at a dynamic size;
a model whose maps are speckle goes back to the graph's own tail, per frame and then for good."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from onnx_exports import export_weights
from rtseg.engines.ort_engine import OrtEngine

SIZE = (256, 512)
RUNTIMES = ["onnxruntime", "openvino"]


def _engine(runtime: str, path: Path, **kw):
    if runtime == "openvino":
        pytest.importorskip("openvino")
        from rtseg.engines.openvino_engine import OpenVINOEngine

        return OpenVINOEngine(path, precision="fp32", **kw)
    return OrtEngine(path, precision="fp32", **kw)


@pytest.fixture(scope="module")
def fastscnn_onnx(weights, tmp_path_factory) -> Path:
    return export_weights(weights, tmp_path_factory.mktemp("host_ids") / "fixed.onnx", size=SIZE)


@pytest.fixture(scope="module")
def dynamic_onnx(weights, tmp_path_factory) -> Path:
    return export_weights(weights, tmp_path_factory.mktemp("host_ids") / "dynamic.onnx", dynamic=True)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_ids_made_on_the_host_are_the_graphs(runtime, fastscnn_onnx, street_frame, caplog):
    with caplog.at_level(logging.INFO):
        host = _engine(runtime, fastscnn_onnx)
    whole = _engine(runtime, fastscnn_onnx, host_ids=False)
    assert "class ids made on the host from the network's scores" in caplog.text
    assert host.ids_on_host and not whole.ids_on_host
    frames = [street_frame, street_frame[:, ::-1], street_frame[200:800, 300:1500]]
    for frame in frames:
        batch = host.preprocess([frame])
        ids, scores = host.infer_scores(batch)
        ids_whole, scores_whole = whole.infer_scores(batch)
        assert np.array_equal(scores, scores_whole)  # the scores output is the graph's own
        assert (ids == ids_whole).mean() >= 0.9999  # float sums in another order: a tie may fall otherwise
        assert np.array_equal(host.infer(batch), ids)
    two = host.predict_batch(frames)  # several frames at once: the same ids
    assert all(np.array_equal(a, host.predict(f)) for a, f in zip(two, frames))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_dynamic_file_makes_them_too_unless_the_scores_do_not_divide_the_size(runtime, dynamic_onnx, street_frame,
                                                                               caplog):
    host = _engine(runtime, dynamic_onnx, size=(256, 512))
    assert np.array_equal(host.predict(street_frame),
                          _engine(runtime, dynamic_onnx, size=(256, 512), host_ids=False).predict(street_frame))
    assert host.ids_on_host
    odd = _engine(runtime, dynamic_onnx, size=(250, 500))  # scores 32x63: no whole number of pixels a cell
    with caplog.at_level(logging.INFO):
        ids = odd.predict(street_frame)
    assert not odd.ids_on_host  # the graph's own tail (ONNX Runtime learns so on the first frame)
    assert runtime == "openvino" or "do not divide 250x500" in caplog.text
    assert np.array_equal(ids, _engine(runtime, dynamic_onnx, size=(250, 500), host_ids=False).predict(street_frame))


class _Scores(nn.Module):
    """Scores at 1/8 (a random 3x3 conv over the 8x8-pooled picture), enlarged as rtseg's networks
    do: on blocks of noise the class map is speckle, with most classes close everywhere."""

    def __init__(self, classes: int = 11):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Conv2d(3, classes, 3, padding=1)

    def forward_scores(self, x):
        low = self.head(F.avg_pool2d(x, 8))
        return F.interpolate(low, size=x.shape[2:], mode="bilinear", align_corners=False), low

    def forward(self, x):
        return self.forward_scores(x)[0]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_model_whose_maps_are_speckle_goes_back_to_its_own_tail(runtime, tmp_path, caplog):
    from rtseg.export.onnx import export_onnx
    from rtseg.meta import ModelMeta

    path = export_onnx(_Scores(), ModelMeta.for_dataset("camvid", input_size=(64, 128)), tmp_path / "s.onnx")
    host = _engine(runtime, path, size=(64, 128))
    whole = _engine(runtime, path, size=(64, 128), host_ids=False)
    assert host.ids_on_host
    rng = np.random.default_rng(0)

    def noise() -> np.ndarray:  # 8x8 blocks of random colours: a random colour in each cell of the scores
        return rng.integers(0, 256, (1, 8, 16, 3), dtype=np.uint8).repeat(8, 1).repeat(8, 2)

    with caplog.at_level(logging.INFO):
        for _ in range(12):  # more than a window's frames of noise
            batch = noise()
            assert (host.infer(batch) == whole.infer(batch)).mean() >= 0.999
    assert "too speckled for ids made on the host" in caplog.text
    for t in [t for t in threading.enumerate() if t.name == "openvino-compile"]:
        t.join(60)
    assert not host.ids_on_host
    batch = noise()
    assert np.array_equal(host.infer(batch), whole.infer(batch))  # the same graph now
