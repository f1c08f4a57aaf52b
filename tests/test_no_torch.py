"""torch is imported only where a network runs in PyTorch or is exported: ``import rtseg``, ``rtseg
--help`` and a run of an ONNX model on ONNX Runtime or OpenVINO never import it. Checked in fresh
processes where importing torch raises ModuleNotFoundError (a meta-path hook, as an environment
without torch would), so any import of it on those paths fails the run."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest



@pytest.fixture(scope="module")
def no_torch_env(blocked_env) -> dict:
    return blocked_env("torch")


@pytest.fixture(scope="module")
def rtseg_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    from rtseg.formats.checkpoint import build_from_checkpoint
    from rtseg.export.onnx import export_onnx

    model, meta = build_from_checkpoint(tiny_checkpoint)
    return export_onnx(model, meta, tmp_path_factory.mktemp("onnx") / "tiny.onnx", size=(64, 96), dynamic=True)


def _run(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_blocker_blocks(no_torch_env, tmp_path):
    proc = _run(no_torch_env, "-c", "import torch", cwd=tmp_path)
    assert proc.returncode != 0 and "torch is blocked by the test" in proc.stderr


def test_import_rtseg_and_help_need_no_torch(no_torch_env, tmp_path):
    proc = _run(no_torch_env, "-c", "import sys, rtseg, rtseg.cli; print(rtseg.__version__); "
                                    "assert 'torch' not in sys.modules", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for args in (["--help"], ["run", "--help"], ["batch", "--help"], ["bench", "--help"]):
        proc = _run(no_torch_env, "-m", "rtseg.cli", *args, cwd=tmp_path)
        assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "auto"])
def test_an_onnx_model_runs_without_torch(no_torch_env, rtseg_onnx, runtime, tmp_path):
    if runtime == "openvino" and importlib.util.find_spec("openvino") is None:
        pytest.skip("OpenVINO is not installed")
    import cv2

    from rtseg.bundled import DEMO_CLIP

    env = {**no_torch_env, "RTSEG_CACHE": str(tmp_path / "cache")}
    proc = _run(env, "-m", "rtseg.cli", "run", str(DEMO_CLIP), "--engine", str(rtseg_onnx), "--runtime", runtime,
                "--max-frames", "4", "--size", "64x96", "-o", "out.mp4", "--json", "r.json", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
    assert '"first_frame_s"' in (tmp_path / "r.json").read_text()


def test_the_bundled_pt_without_torch_says_what_to_install(no_torch_env, tmp_path):
    """The bundled weights are a PyTorch checkpoint: without torch, one line, not a traceback."""
    proc = _run(no_torch_env, "-m", "rtseg.cli", "run", "--runtime", "pytorch", "--max-frames", "1", "-q", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "torch" in proc.stderr.lower() and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_stream_of_an_onnx_model_without_torch(no_torch_env, rtseg_onnx, tmp_path):
    """rtseg.stream's device="auto" asks PyTorch which GPU it sees; without PyTorch it is the CPU."""
    code = (f"import sys, rtseg; n = sum(1 for _ in rtseg.stream(max_frames=3, weights={str(rtseg_onnx)!r}, "
            "runtime='onnxruntime', size='64x96', view=None)); assert n == 3 and 'torch' not in sys.modules; print(n)")
    proc = _run({**no_torch_env, "RTSEG_CACHE": str(tmp_path / "cache")}, "-c", code, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "3", proc.stderr
