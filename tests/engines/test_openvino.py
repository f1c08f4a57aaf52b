"""OpenVINO engine: loads an rtseg ONNX file, predicts ids at the frame's size, matches the
PyTorch engine in f32 (>= 99.5% of pixels on a real frame); the .onnx runtime choice."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from onnx_exports import export_weights
from rtseg import load_engine
from rtseg.engines import resolve_onnx_runtime
from rtseg.errors import RtsegError

ov = pytest.importorskip("openvino")
from rtseg.engines.openvino_engine import cpu_has_bf16  # noqa: E402  (after the skip: it needs openvino)

SIZE = (256, 512)  # small enough to keep each inference well under a second here
F32_PARITY = 0.995  # f32 vs PyTorch fp32: only summation order differs, so near-identical ids


@pytest.fixture(scope="module")
def fixed_onnx(weights, tmp_path_factory) -> Path:
    return export_weights(weights, tmp_path_factory.mktemp("ov") / "fixed.onnx", size=SIZE)


@pytest.fixture(scope="module")
def frame(street_frame) -> np.ndarray:
    return cv2.resize(street_frame, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def torch_ids(weights, frame) -> np.ndarray:
    return load_engine(weights, size=SIZE).predict(frame)


def test_f32_matches_pytorch_at_the_frame_size(fixed_onnx, street_frame, frame, torch_ids):
    engine = load_engine(fixed_onnx, runtime="openvino", precision="f32")
    assert (engine.name, engine.device, engine.input_size, engine.precision) == ("openvino", "cpu", SIZE, "fp32")
    ids = engine.predict(frame)
    assert ids.shape == frame.shape[:2] and ids.dtype == np.uint8
    assert (ids == torch_ids).mean() >= F32_PARITY
    big = engine.predict(street_frame)  # 1024x2048 in: resized down, ids resized back up
    assert big.shape == street_frame.shape[:2]
    assert int(big.max()) < engine.meta.num_classes


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_runs_and_reports_agreement(fixed_onnx, frame, torch_ids, record_property, caplog):
    with caplog.at_level(logging.INFO):
        engine = load_engine(fixed_onnx, runtime="openvino", precision="bf16")
    assert engine.precision == "bf16" and "bf16" in engine.describe()
    ids = engine.predict(frame)
    assert ids.shape == frame.shape[:2] and int(ids.max()) < engine.meta.num_classes
    agree = float((ids == torch_ids).mean())
    record_property("bf16_agreement", agree)  # reported, not asserted: benchmarks/cpu_engines.py has the figures
    print(f"OpenVINO bf16 vs PyTorch fp32: {agree:.4%} of pixels agree")


@pytest.mark.slow
def test_dynamic_file_is_reshaped_and_batches_agree(weights, tmp_path, frame):
    dyn = export_weights(weights, tmp_path / "dyn.onnx", dynamic=True)
    latency = load_engine(dyn, runtime="openvino", size=(128, 256), precision="f32")
    assert latency.input_size == (128, 256)
    flipped = np.ascontiguousarray(frame[:, ::-1])
    batch = latency.preprocess([frame, flipped])
    one_by_one = latency.infer(batch)
    parallel = load_engine(dyn, runtime="openvino", size=(128, 256), precision="f32", hint="throughput").infer(batch)
    assert one_by_one.shape == (2, 128, 256)
    assert np.array_equal(one_by_one, parallel)  # same frames in the same order, whichever request ran them
    assert not np.array_equal(one_by_one[0], one_by_one[1])


def test_fixed_file_at_another_size_warns_and_keeps_its_size(fixed_onnx, caplog):
    with caplog.at_level(logging.WARNING):
        engine = load_engine(fixed_onnx, runtime="openvino", size=(128, 256), precision="f32")
    assert engine.input_size == SIZE
    assert "cannot run at 128x256" in caplog.text


@pytest.mark.parametrize("kw, match", [({"precision": "int4"}, r"precision 'int4'.*auto, fp32, bf16, fp16"),
                                       ({"hint": "fast"}, r"hint 'fast'.*latency, throughput"),
                                       ({"device": "tpu"}, r"device 'tpu'")])
def test_bad_options_are_one_line(fixed_onnx, kw, match):
    with pytest.raises(RtsegError, match=match) as info:
        load_engine(fixed_onnx, runtime="openvino", **kw)
    assert "\n" not in str(info.value)


def test_auto_runtime_is_the_documented_choice(fixed_onnx):
    from rtseg.engines.openvino_engine import cpu_has_bf16

    # Documented in rtseg/engines/__init__.py: OpenVINO when it imports (bf16 where the CPU has it).
    assert resolve_onnx_runtime("auto", "cpu") == "openvino"
    assert resolve_onnx_runtime(None, "cpu") == "openvino"
    engine = load_engine(fixed_onnx)
    assert engine.name == "openvino"
    assert engine.precision == ("bf16" if cpu_has_bf16() else "fp32")
    assert load_engine(fixed_onnx, runtime="onnxruntime").name == "onnxruntime"


def test_unknown_runtime_is_one_line(fixed_onnx):
    with pytest.raises(RtsegError, match=r"--runtime 'tflite' is not allowed.*auto, pytorch, onnxruntime, openvino, tensorrt") as info:
        load_engine(fixed_onnx, runtime="tflite")
    assert "\n" not in str(info.value)


def test_threads_reach_openvino(fixed_onnx):
    engine = load_engine(fixed_onnx, runtime="openvino", threads=1)
    assert int(engine.compiled.get_property("INFERENCE_NUM_THREADS")) == 1


# Two engines closed in the order they were opened, then SIGTERM and Ctrl-C, in a fresh process
# (a crash there fails this test instead of ending the suite). OpenVINO's CPU plugin left the
# first Core's freed signal stack installed in the thread; Python's handlers run on it, so before
# rtseg.signals.keep_signal_stack the first signal afterwards was a SIGSEGV (exit -11).
_TWO_ENGINES = r"""
import gc, os, signal, sys, time
from rtseg import load_engine, signals
first = load_engine(sys.argv[1], runtime="openvino")
second = load_engine(sys.argv[1], runtime="openvino")
del first; gc.collect()
del second; gc.collect()
for sig in (signal.SIGTERM, signal.SIGINT):
    with signals.interrupt_on_signals():
        try:
            os.kill(os.getpid(), sig)
            time.sleep(2)
        except KeyboardInterrupt as exc:
            print("stopped:", exc)
"""


def test_a_signal_after_engines_closed_out_of_order_stops_cleanly(fixed_onnx):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _TWO_ENGINES, str(fixed_onnx)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.splitlines() == ["stopped: terminated", "stopped: interrupted"], proc.stdout
