"""The cache is content-addressed and kept in bounds: two spellings of the same --classes make one
wrapped entry; ``rtseg cache`` lists entries; ``rtseg cache clear [--older-than DAYS]`` removes
them; past RTSEG_CACHE_MAX the least recently used entries go; a hit counts as a use."""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from rtseg.engines.cache_index import clear, entries, max_bytes, prune
from rtseg.engines.foreign_cache import wrapped_artifact
from rtseg.errors import RtsegError


def _foreign(path: Path, classes: int = 19) -> Path:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, classes, 1)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 64, 96),), str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {2: "h", 3: "w"}, "output": {2: "h2", 3: "w2"}}, opset_version=17,
                          dynamo=False)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RTSEG_CACHE", str(root))
    monkeypatch.delenv("RTSEG_CACHE_MAX", raising=False)
    return root


def test_two_spellings_of_the_same_classes_make_one_entry(cache, tmp_path, monkeypatch):
    model = _foreign(tmp_path / "fcn.onnx")
    names = tmp_path / "names.json"
    names.write_text(json.dumps([f"c{i}" for i in range(19)]))
    monkeypatch.chdir(tmp_path)
    a = wrapped_artifact(model, classes="cityscapes")
    assert wrapped_artifact(model, classes="Cityscapes ") == a  # a preset in any case
    b = wrapped_artifact(model, classes="names.json")
    assert wrapped_artifact(model, classes=str(names.resolve())) == b  # a file by its content, not its path
    assert len(list((cache / "foreign").glob("*.onnx"))) == 2


def test_list_clear_and_prune(cache, tmp_path, monkeypatch):
    model = _foreign(tmp_path / "fcn.onnx")
    first = wrapped_artifact(model, classes="cityscapes")
    second = wrapped_artifact(model, classes="cityscapes", normalize="unit")
    old = time.time() - 10 * 86400
    os.utime(first, (old, old))
    listed = entries(cache)
    assert [e.path for e in listed] == [second, first]  # the most recently used first
    assert all(e.kind == "foreign" and e.model == "fcn.onnx" and e.artifact == "onnx" for e in listed)
    assert wrapped_artifact(model, classes="cityscapes") == first  # a hit is a use: now the newest
    assert [e.path for e in entries(cache)] == [first, second]
    assert prune(cache, keep=first, limit=first.stat().st_size + 1) and not second.exists() and first.exists()
    assert clear(cache, older_than_days=1) == [] and first.exists()
    (cache / "auto_runtime.json").write_text("{}")
    assert [e.path for e in clear(cache)] == [first] and not (cache / "auto_runtime.json").exists()


def test_the_size_limit_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE_MAX", "500M")
    assert max_bytes() == 500 * 1024**2
    monkeypatch.setenv("RTSEG_CACHE_MAX", "0")
    assert max_bytes() == 0
    monkeypatch.setenv("RTSEG_CACHE_MAX", "lots")
    with pytest.raises(RtsegError, match="RTSEG_CACHE_MAX='lots'"):
        max_bytes()


def test_a_new_entry_prunes_the_least_recently_used_past_the_limit(cache, tmp_path, monkeypatch):
    model = _foreign(tmp_path / "fcn.onnx")
    first = wrapped_artifact(model, classes="cityscapes")
    monkeypatch.setenv("RTSEG_CACHE_MAX", str(first.stat().st_size + 100))
    second = wrapped_artifact(model, classes="cityscapes", bgr=True)
    assert second.exists() and not first.exists()


def test_rtseg_cache_lists_and_clears(rtseg_cli, cache, tmp_path):
    model = _foreign(tmp_path / "fcn.onnx")
    wrapped_artifact(model, classes="cityscapes")
    code, out, err = rtseg_cli("cache")
    assert code == 0, err
    assert "fcn.onnx" in out and "foreign" in out and "1 entries" in out
    code, out, err = rtseg_cli("cache", "clear", "--older-than", "1")
    assert code == 0 and "removed 0 entries" in out
    code, out, err = rtseg_cli("cache", "clear")
    assert code == 0 and "removed 1 entries" in out and not list((cache / "foreign").glob("*.onnx"))
    code, _, err = rtseg_cli("cache", "clear", "--older-than", "-1")
    assert code == 2 and "--older-than -1" in err
