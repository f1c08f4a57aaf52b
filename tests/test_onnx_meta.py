"""rtseg/formats/onnx_meta.py reads metadata_props from the protobuf itself (no onnx import at a
run's start): the same dict as onnx's own reader, and a one-line error for a broken file."""
from __future__ import annotations

import warnings

import onnx
import pytest
import torch
import torch.nn as nn

from rtseg.errors import RtsegError
from rtseg.formats.onnx_meta import onnx_metadata_props, read_onnx_meta


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Conv2d(3, 4, 3).eval(), (torch.zeros(1, 3, 16, 16),), str(path), dynamo=False,
                          opset_version=17)
    model = onnx.load(str(path))
    for k, v in {"author": "Ultralytics", "names": "{0: 'road', 1: 'car'}", "é": "ünï"}.items():
        model.metadata_props.add(key=k, value=v)
    model.doc_string = "x" * 300  # a field before the graph, so the reader has to skip it
    onnx.save(model, str(path))
    return path


def test_the_props_are_onnxs_own(model_file):
    theirs = {p.key: p.value for p in onnx.load(str(model_file)).metadata_props}
    assert onnx_metadata_props(model_file) == theirs and theirs["é"] == "ünï"


def test_a_truncated_file_is_refused_in_one_line(model_file, tmp_path):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(model_file.read_bytes()[:-40])
    with pytest.raises((ValueError, IndexError)):
        onnx_metadata_props(cut)
    with pytest.raises(RtsegError, match="is not a readable ONNX file|without rtseg metadata"):
        read_onnx_meta(cut)
    with pytest.raises(RtsegError, match="without rtseg metadata"):
        read_onnx_meta(model_file)
