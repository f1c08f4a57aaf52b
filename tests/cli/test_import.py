"""``rtseg import``: a foreign ONNX segmentation file -> an rtseg artifact; bad files are one line, exit 2."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from rtseg.formats.onnx_meta import read_onnx_meta


def _export(net: nn.Module, path, shape) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(shape),), str(path), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False)


def test_import_writes_an_artifact(rtseg_cli, tmp_path):
    torch.manual_seed(0)
    _export(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 19, 1)), tmp_path / "m.onnx",
            (1, 3, 64, 96))
    code, out, err = rtseg_cli("import", "m.onnx", "--classes", "cityscapes", "-o", "mine.onnx")
    assert code == 0, err
    meta = read_onnx_meta(tmp_path / "mine.onnx")
    assert meta.dataset == "cityscapes" and meta.input_size == (64, 96) and "wrote" in out


def test_import_errors_are_one_line(rtseg_cli, tmp_path):
    torch.manual_seed(0)
    _export(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Flatten(), nn.Linear(8 * 16 * 16, 1000)), tmp_path / "cls.onnx",
            (1, 3, 32, 32))
    code, _, err = rtseg_cli("import", "cls.onnx", "-o", "x.onnx")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "not a segmentation output" in lines[0]
    assert not (tmp_path / "x.onnx").exists()
    (tmp_path / "m.onnx").write_bytes(b"\x00" * 10)
    code, _, err = rtseg_cli("import", "m.onnx", "--classes", "voc")
    assert code == 2 and "ONNX" in err
