"""Multi-stream engines (``streams=N``): ``infer`` from N threads at once gives the ids one
stream gives, each thread on its own session or infer request; the flag is refused where it
does not apply."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from onnx_exports import export_weights
from rtseg import load_engine
from rtseg.errors import RtsegError

SIZE = (128, 160)
RUNTIMES = ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    not __import__("importlib").util.find_spec("openvino"), reason="OpenVINO is not installed"))]


@pytest.fixture(scope="module")
def onnx_file(weights, tmp_path_factory) -> Path:
    return export_weights(weights, tmp_path_factory.mktemp("streams") / "fixed.onnx", size=SIZE)


@pytest.fixture(scope="module")
def batches() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, *SIZE, 3), dtype=np.uint8)
    return [np.roll(base, 7 * i, axis=2) for i in range(8)]  # different frames, realistic enough to differ


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_two_streams_from_two_threads_give_the_one_stream_ids(onnx_file, batches, runtime):
    # fp32: OpenVINO's default bf16 on AMX may round one thread's work and two threads' apart
    one = load_engine(onnx_file, runtime=runtime, threads=2, precision="fp32")
    want = [one.infer(b) for b in batches]
    two = load_engine(onnx_file, runtime=runtime, threads=2, streams=2, precision="fp32")
    assert two.streams == 2 and "2 streams" in two.describe()
    got: dict[int, np.ndarray] = {}
    handles: dict[str, object] = {}
    start = threading.Barrier(2)

    def work(k: int) -> None:
        start.wait()  # both threads infer at the same time
        for i in range(k, len(batches), 2):
            got[i] = two.infer(batches[i])
        handles[threading.current_thread().name] = (two._graph.per_thread if runtime == "onnxruntime" else two._graph.requests).get()

    threads = [threading.Thread(target=work, args=(k,), name=f"w{k}") for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(np.array_equal(got[i], want[i]) for i in range(len(batches)))
    assert handles["w0"] is not handles["w1"]  # a session / an infer request of its own


def test_ort_streams_share_the_threads(onnx_file):
    engine = load_engine(onnx_file, runtime="onnxruntime", threads=4, streams=2)
    assert len(engine.sessions) == 2
    assert all(s.get_session_options().intra_op_num_threads == 2 for s in engine.sessions)


def test_openvino_streams_float_between_cores(onnx_file):
    """Several OpenVINO streams share the cores with the pipeline's own threads: they are not
    pinned to cores; one stream keeps OpenVINO's pinning (measured faster that way)."""
    pytest.importorskip("openvino")
    one = load_engine(onnx_file, runtime="openvino", threads=2)
    two = load_engine(onnx_file, runtime="openvino", threads=2, streams=2)
    assert two.compiled.get_property("ENABLE_CPU_PINNING") is False
    from rtseg.engines.openvino_engine import new_core

    assert one.compiled.get_property("ENABLE_CPU_PINNING") == new_core().get_property("CPU", "ENABLE_CPU_PINNING")


def test_openvino_keeps_one_frame_more_in_flight_than_its_streams(onnx_file):
    """A throughput engine takes a frame more than its streams (the pipeline's infer workers), so a
    stream never waits for Python to hand it the next; a latency engine takes one. It reports the
    streams OpenVINO made, which are no more than the cores."""
    pytest.importorskip("openvino")
    import os

    from rtseg.pipeline.stages import engine_stages

    one = load_engine(onnx_file, runtime="openvino", threads=2)
    assert (one.streams, one.in_flight) == (1, 1)
    two = load_engine(onnx_file, runtime="openvino", threads=2, streams=2)
    made = int(two.compiled.get_property("NUM_STREAMS"))
    assert two.streams == made and two.in_flight == made + 1
    infer = next(s for s in engine_stages(two, None) if s.name == "infer")
    assert infer.workers == two.in_flight
    many = load_engine(onnx_file, runtime="openvino", streams=len(os.sched_getaffinity(0)) + 2)
    assert many.streams == int(many.compiled.get_property("NUM_STREAMS")) <= len(os.sched_getaffinity(0))
    ort_two = load_engine(onnx_file, runtime="onnxruntime", threads=2, streams=2)
    assert ort_two.in_flight == ort_two.streams == 2  # a session per stream, run on the calling thread


def test_streams_is_refused_where_it_does_not_apply(weights, onnx_file):
    with pytest.raises(RtsegError, match=r"--streams 2 applies to ONNX Runtime and OpenVINO; .* runs on pytorch"):
        load_engine(weights, streams=2)  # a .pt on its own runtime
    with pytest.raises(RtsegError, match="--streams must be >= 1, or 0 for as many as pay here; got -1"):
        load_engine(onnx_file, runtime="onnxruntime", streams=-1)


def test_auto_streams_is_two_only_on_onnx_runtimes_run_pipelined_on_a_multicore_cpu(monkeypatch):
    import os

    from rtseg.engines import auto_streams

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert auto_streams(Path("m.onnx"), "cpu", live=False) == 2
    assert auto_streams(Path("m.onnx"), "cpu", live=True) == 1  # latency first
    assert auto_streams(Path("m.onnx"), "cpu", live=False, sequential=True) == 1
    assert auto_streams(Path("m.onnx"), "cuda", live=False) == 1
    # a .pt: runtime auto runs it on OpenVINO or ONNX Runtime on a CPU (2 streams), --runtime pytorch on one
    assert auto_streams(Path("m.pt"), "cpu", live=False) == 2 and auto_streams(None, "cpu", live=False) == 2
    assert auto_streams(Path("m.pt"), "cpu", live=False, runtime="pytorch") == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert auto_streams(Path("m.onnx"), "cpu", live=False) == 1
