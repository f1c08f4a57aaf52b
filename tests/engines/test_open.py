"""open_engine as one table-driven choice (issue #35): ``streams=0`` is decided with the runtime
that opens (after auto's probe, each candidate timed with its own), an artifact's metadata is
read once an open, the runtime rows carry their own precision rules, and ``warmup`` warms."""
from __future__ import annotations

import os

import numpy as np
import pytest

from onnx_exports import export_weights
from rtseg.engines import open_engine, probe, runtime_streams
from rtseg.engines.base import Engine
from rtseg.engines.probe import Candidate
from rtseg.engines.runtimes import TABLE
from rtseg.errors import RtsegError
from rtseg.formats import artifact_meta

SIZE = (64, 96)


@pytest.fixture
def two_cores(monkeypatch, tmp_path):
    """A private cache on a CPU with two usable cores."""
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})


@pytest.fixture(scope="module")
def dynamic_onnx(tiny_checkpoint, tmp_path_factory):
    return export_weights(tiny_checkpoint, tmp_path_factory.mktemp("open") / "dynamic.onnx", size=SIZE,
                          dynamic=True)


def test_runtime_streams_is_the_rule_auto_streams_keeps():
    assert [runtime_streams(name, "cpu", live=False) for name in TABLE] == [
        1, *(2 if len(os.sched_getaffinity(0)) >= 2 else 1 for _ in range(2)), 1]
    assert runtime_streams("onnxruntime", "cpu", live=True) == 1
    assert runtime_streams("onnxruntime", "cpu", live=False, sequential=True) == 1
    assert runtime_streams("onnxruntime", "cuda", live=False) == 1


def test_streams_0_on_a_fixed_runtime_are_those_that_pay_there(dynamic_onnx, tiny_checkpoint, two_cores):
    assert open_engine(dynamic_onnx, runtime="onnxruntime", streams=0, note=lambda _: None).streams == 2
    assert open_engine(dynamic_onnx, runtime="onnxruntime", streams=0, live=True).streams == 1
    assert open_engine(dynamic_onnx, runtime="onnxruntime", streams=0, sequential=True).streams == 1
    assert open_engine(tiny_checkpoint, runtime="pytorch", size=SIZE, streams=0).streams == 1  # no error: one pays
    with pytest.raises(RtsegError, match="--streams 2 applies to ONNX Runtime and OpenVINO"):
        open_engine(tiny_checkpoint, runtime="pytorch", size=SIZE, streams=2)  # one asked for is kept as asked


@pytest.mark.parametrize("picked, live, want", [("onnxruntime", False, 2), ("onnxruntime", True, 1),
                                                ("pytorch", False, 1)])
def test_streams_0_are_decided_after_auto_chose_the_runtime(tiny_checkpoint, two_cores, monkeypatch,
                                                            picked, live, want):
    seen = {}

    def choose(weights, family, *, streams, opener, **kw):  # auto's probe, its pick given
        seen["streams"] = {c.runtime: streams(c) for c in (Candidate("pytorch", "fp32"),
                                                           Candidate("onnxruntime", "fp32"))}
        return probe.Choice(picked, "fp32")

    monkeypatch.setattr(probe, "choose", choose)
    engine = open_engine(tiny_checkpoint, runtime="auto", size=SIZE, streams=0, live=live, note=lambda _: None)
    assert engine.name == picked and engine.streams == want
    assert seen["streams"] == {"pytorch": 1, "onnxruntime": 1 if live else 2}  # each candidate timed with its own


def test_an_open_reads_the_metadata_once(dynamic_onnx, tmp_path, monkeypatch):
    import rtseg.formats.onnx_meta as onnx_meta

    path = tmp_path / "m.onnx"
    path.write_bytes(dynamic_onnx.read_bytes())
    reads, real = [], onnx_meta.read_onnx_meta
    monkeypatch.setattr(onnx_meta, "read_onnx_meta", lambda p: (reads.append(p), real(p))[1])
    # the foreign-file check, the default size and the backend: one read
    engine = open_engine(path, runtime="onnxruntime", frame_size=(540, 960), note=lambda _: None)
    assert len(reads) == 1 and engine.input_size != SIZE  # the default size came from the metadata
    open_engine(path, runtime="onnxruntime")
    assert len(reads) == 1
    path.write_bytes(b"not onnx any more")  # a rewritten file is read again
    with pytest.raises(RtsegError, match="not a readable ONNX file"):
        artifact_meta(path)
    assert len(reads) == 2


def test_the_rows_carry_their_precision_rules():
    assert TABLE["openvino"].export_fp16("fp16", "cpu") is False  # a hint on the fp32 export
    assert TABLE["openvino"].export_fp16("bf16", "cpu") is False
    assert TABLE["tensorrt"].export_fp16("auto", "cpu") is True  # the fp16 plan is the one worth running
    assert TABLE["onnxruntime"].export_fp16("auto", "cpu") is False
    with pytest.raises(RtsegError, match="ONNX Runtime computes fp32 on the CPU"):  # its backend's check
        TABLE["onnxruntime"].export_fp16("bf16", "cpu")
    with pytest.raises(RtsegError, match="rtseg exports fp32 or fp16 for TensorRT"):
        TABLE["tensorrt"].export_fp16("bf16", "cuda")


class _Counting(Engine):
    name, input_size, batch = "counting", (32, 48), 2

    def __init__(self):
        self.calls = []

    def infer(self, batch):
        self.calls.append(batch.shape)
        return np.zeros(batch.shape[:3], np.uint8)


def test_warm_up_infers_black_frames_at_the_inference_size(dynamic_onnx):
    engine = _Counting()
    engine.warm_up(0)
    engine.warm_up(3)
    assert engine.calls == [(2, 32, 48, 3)] * 3  # a fixed-batch engine gets its own batch
    warm = open_engine(dynamic_onnx, runtime="onnxruntime", warmup=2)
    assert warm.infer(np.zeros((1, *SIZE, 3), np.uint8)).shape == (1, *SIZE)
    with pytest.raises(RtsegError, match="warmup must be >= 0"):
        open_engine(dynamic_onnx, runtime="onnxruntime", warmup=-1)
