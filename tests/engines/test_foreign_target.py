"""Issue #24's target: the shipped weights exported as plain ONNX files the way other tools ship
them (benchmarks/foreign.py::export_plain: float input, ImageNet normalisation outside the graph,
dynamic H/W; logits at the input size, int64 ids N x 1 x H x W, logits at 1/4) and run as
foreign files with classes="camvid", normalize="imagenet" give the ids the ``.pt`` gives on
rtseg's PyTorch engine at the same size, on real street video and the street frame."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

import rtseg
from rtseg.bundled import BENCH_FRAME, DEFAULT_WEIGHTS, DEMO_CLIP

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "foreign.py"
MIN_AGREEMENT = {"logits": 0.99, "ids": 0.99, "quarter": 0.95}  # the target

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="the shipped weights are not in this checkout")


def _bench():
    spec = importlib.util.spec_from_file_location("foreign_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    """Five frames of the CamVid demo clip at their own 360x480 and the 1024x2048 street frame at 512x1024."""
    cap, found = cv2.VideoCapture(str(DEMO_CLIP)), []
    for index in (0, 25, 50, 75, 100):
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
        if ok:
            found.append(frame)
    cap.release()
    street = cv2.imread(str(BENCH_FRAME))
    assert len(found) == 5 and street is not None, "the bundled demo clip or street frame is missing"
    return found + [cv2.resize(street, (1024, 512), interpolation=cv2.INTER_AREA)]


@pytest.fixture(scope="module")
def reference(scenes) -> list[np.ndarray]:
    """The ``.pt``'s ids on rtseg's PyTorch engine, each scene at its own size."""
    out = []
    for frame in scenes:
        engine = rtseg.load_engine(DEFAULT_WEIGHTS, runtime="pytorch", size=frame.shape[:2])
        out.append(engine.predict(frame))
    return out


def _runtimes() -> list[str]:
    return ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


@pytest.mark.parametrize("kind", ["logits", "ids", "quarter"])
def test_foreign_exports_of_the_shipped_weights_give_its_ids(kind, scenes, reference, tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    plain = _bench().export_plain(DEFAULT_WEIGHTS, kind, tmp_path / f"plain_{kind}.onnx")
    notes: list[str] = []
    for runtime in _runtimes():
        same = total = 0
        for frame, want in zip(scenes, reference):
            # fp32 pinned: this test is about the wrapping, not bf16 (OpenVINO's default where the CPU has AMX)
            engine = rtseg.load_engine(plain, runtime=runtime, size=frame.shape[:2], classes="camvid",
                                       normalize="imagenet", note=notes.append, precision="fp32")
            assert engine.meta.dataset == "camvid" and engine.meta.class_names[0] == "Sky"
            got = engine.predict(frame)
            assert got.shape == want.shape
            same, total = same + int((got == want).sum()), total + want.size
        print(f"{kind} on {runtime}: {100 * same / total:.3f}% of {total} pixels agree with the .pt")
        assert same / total >= MIN_AGREEMENT[kind]
    assert sum(line.startswith("wrapped ") for line in notes) == 1  # wrapped once, then the cache served it
