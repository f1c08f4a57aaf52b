"""A foreign ONNX file is wrapped once into the cache; the second use is a cache hit."""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from rtseg.engines.foreign_cache import is_foreign_onnx, wrapped_artifact
from rtseg.formats.onnx_meta import read_onnx_meta


def test_wrapped_once_then_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    raw = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Sequential(nn.Conv2d(3, 11, 3, 2, 1)).eval(), (torch.zeros(1, 3, 64, 64),), str(raw),
                          input_names=["input"], output_names=["output"], opset_version=17, dynamo=False)
    assert is_foreign_onnx(raw)
    notes: list[str] = []
    first = wrapped_artifact(raw, classes="camvid", note=notes.append)
    assert not is_foreign_onnx(first) and read_onnx_meta(first).extra["cache_key"]
    assert len(notes) == 1 and notes[0].startswith("wrapped m.onnx")
    stamp = first.stat().st_ino, first.read_bytes()  # a rewrite would be a new file, renamed into place
    assert wrapped_artifact(raw, classes="camvid", note=notes.append) == first and len(notes) == 1  # a hit
    assert (first.stat().st_ino, first.read_bytes()) == stamp  # reused as it is (a hit only marks its use)
    other = wrapped_artifact(raw, classes="camvid", normalize="unit", note=notes.append)
    assert other != first and len(notes) == 2  # other flags: another entry
