"""Shared fixtures. Tests that read ../shared/data skip cleanly when it is absent (a user's clone)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (only the project's own CI has it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def camvid_root(shared_data: Path) -> Path:
    root = shared_data / "camvid"
    if not (root / "val").is_dir():
        pytest.skip("CamVid is not in ../shared/data")
    return root


@pytest.fixture(scope="session")
def street_frame():
    """The bundled real 1024x2048 street frame (BGR uint8 numpy array)."""
    import cv2

    frame = cv2.imread(str(ROOT / "assets" / "bench" / "street_1024x2048.jpg"))
    assert frame is not None, "assets/bench/street_1024x2048.jpg is missing from the repository"
    return frame


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained Fast-SCNN CamVid checkpoint (fixed seed), saved once per session."""
    from rtseg import create_model
    from rtseg.formats.checkpoint import save_checkpoint
    from rtseg.meta import ModelMeta

    torch.manual_seed(0)
    model = create_model("fastscnn", num_classes=11).eval()
    path = tmp_path_factory.mktemp("ckpt") / "fastscnn_untrained.pt"
    return save_checkpoint(path, model, ModelMeta.for_dataset("camvid", input_size=(360, 480)))


@pytest.fixture(scope="session")
def trt_export(tmp_path_factory, tiny_checkpoint: Path):
    """``trt_export(size, precision)`` -> (raw, TensorRT-prepared) ONNX exports of the untrained
    checkpoint, made once per test session: tests/export/test_tensorrt.py and
    tests/engines/test_trt.py share them (an export takes seconds)."""
    return lambda size, precision: _cached_trt_export(tmp_path_factory, tiny_checkpoint, size, precision)


def _cached_trt_export(tmp_path_factory, checkpoint: Path, size: tuple[int, int], precision: str) -> tuple[Path, Path]:
    import onnx

    from rtseg.export import trt_graph as G
    from rtseg.export.onnx import export_onnx
    from rtseg.formats.checkpoint import build_from_checkpoint

    out = tmp_path_factory.getbasetemp() / "rtseg_trt_onnx"
    out.mkdir(exist_ok=True)
    stem = f"{precision}_{size[0]}x{size[1]}"
    raw, prepared = out / f"{stem}.onnx", out / f"{stem}_trt.onnx"
    if not prepared.is_file():
        model, meta = build_from_checkpoint(checkpoint)
        export_onnx(model, meta, raw, size=size, fp16=precision == "fp16", dynamic=False,
                    scores=False)  # as export_engine makes it: a plan has ids only
        graph = G.prepare_onnx_for_tensorrt(onnx.load(str(raw)))
        onnx.checker.check_model(graph)
        onnx.save(graph, str(prepared))
    return raw, prepared


@pytest.fixture(autouse=True, scope="session")
def _private_export_cache(tmp_path_factory):
    """Exports that `--runtime auto` makes of a .pt go to a folder of the test session, never to
    the user's ~/.cache/rtseg."""
    import os

    before = os.environ.get("RTSEG_CACHE")
    os.environ["RTSEG_CACHE"] = str(tmp_path_factory.mktemp("rtseg_cache"))
    yield
    if before is None:
        os.environ.pop("RTSEG_CACHE", None)
    else:
        os.environ["RTSEG_CACHE"] = before


def run_main(args, monkeypatch, capture) -> tuple[int, str, str]:
    """``rtseg ARGS...`` through the console entry point in this process (a subprocess costs a
    torch import each): (exit code, stdout, stderr) as ``capture`` (capsys or capfd) saw them."""
    from rtseg.cli import main

    monkeypatch.setattr(sys, "argv", ["rtseg", *map(str, args)])
    capture.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capture.readouterr()
    return code, out, err


@pytest.fixture
def rtseg_cli(monkeypatch, capfd, tmp_path):
    """``rtseg_cli(*args)`` -> (exit code, stdout, stderr), in this process, in ``tmp_path``,
    captured at the fd level (OpenCV's and FFmpeg's own messages too)."""
    def call(*args):
        monkeypatch.chdir(tmp_path)
        return run_main(args, monkeypatch, capfd)
    return call


_BLOCKER = """import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r} or name.startswith({module!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}} ({module} is blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


@pytest.fixture(scope="session")
def blocked_env(tmp_path_factory):
    """``make(module)``: the environment of a fresh Python in which ``import module`` fails as it does
    where the package is not installed (a sitecustomize.py on PYTHONPATH), rtseg importable from
    this checkout."""

    def make(module: str) -> dict:
        folder = tmp_path_factory.mktemp(f"no_{module}")
        (folder / "sitecustomize.py").write_text(_BLOCKER.format(module=module))
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]), "COLUMNS": "200"}

    return make
