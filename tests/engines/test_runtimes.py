"""The one runtime table: every suffix has a runtime, every row names a real backend, and the
messages built from it say what they said when they were written by hand."""
from __future__ import annotations

import importlib.util

import pytest

from rtseg.engines import runtimes
from rtseg.engines.base import Engine, engine_device
from rtseg.errors import RtsegError
from rtseg.formats import SUFFIXES, suffixes_of


def test_every_suffix_has_a_runtime_and_every_row_a_backend():
    ran = {s for row in runtimes.TABLE.values() for s in row.suffixes}
    assert ran == set(SUFFIXES)
    for row in runtimes.TABLE.values():
        assert importlib.util.find_spec(f"rtseg.engines.{row.module}") is not None, row
        assert row.cache_suffix is None or row.cache_suffix in SUFFIXES
    assert issubclass(runtimes.TABLE["pytorch"].engine_class(), Engine)
    assert suffixes_of("tensorrt") == (".plan", ".engine")


def test_names_and_messages_come_from_the_table():
    assert runtimes.RUNTIMES == ("auto", "pytorch", "onnxruntime", "openvino", "tensorrt")
    assert runtimes.ONNX_RUNTIMES == ("auto", "onnxruntime", "openvino")
    assert runtimes.known_suffixes() == (".pt/.pth (PyTorch), .onnx (ONNX Runtime or OpenVINO), .plan/.engine "
                                         "(TensorRT), .xml (OpenVINO)")
    assert [n for n, r in runtimes.TABLE.items() if r.streams] == ["onnxruntime", "openvino"]
    assert dict(runtimes.TABLE["openvino"].auto_kw) == {"precision": "f32"}  # auto: PyTorch's class ids


def test_artifact_family():
    assert [runtimes.artifact_family(p) for p in ("a.pt", "b.PTH", "c.onnx", "d.plan", "e.engine", "f.xml")] == [
        "pytorch", "pytorch", "onnx", "tensorrt", "tensorrt", "openvino"]
    with pytest.raises(RtsegError, match=r"'m\.tflite'.*'\.tflite'.*known: \.pt/\.pth") as info:
        runtimes.artifact_family("m.tflite")
    assert "\n" not in str(info.value)


def test_engine_device_names_the_bad_value():
    assert str(engine_device("CUDA:1")) == "cuda:1" and engine_device(None).is_auto
    with pytest.raises(RtsegError, match="unknown device 'tpu'; use auto, cpu, cuda or cuda:N"):
        engine_device("tpu")
