"""The wheel carries the shipped weights and the demo media, and every rtseg package: an
installed wheel runs the demo from any folder (pip install . from a clone, or a wheel built here
and installed elsewhere)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # With setuptools here, build offline with it; else pip fetches it into an isolated build.
    no_isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *no_isolation, str(ROOT), "-w", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{proc.stderr[-2000:]}")
    return next(out.glob("rtseg-*.whl"))


@pytest.mark.slow
def test_the_wheel_holds_the_weights_the_media_and_every_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("rtseg/_models/fastscnn_camvid.pt", "rtseg/_models/README.md",
                   "rtseg/_assets/demo/camvid_0016E5_val_15fps.mp4", "rtseg/_assets/bench/street_1024x2048.jpg"):
        assert needed in names, needed
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "rtseg").rglob("__init__.py")}
    assert all(f"{pkg}/__init__.py" in names for pkg in packages), packages - {n.rsplit("/", 1)[0] for n in names}


@pytest.mark.slow
def test_an_installed_wheel_streams_the_demo_from_any_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(target)}  # before the clone's editable install
    code = "import rtseg; print(rtseg.__file__); print(sum(1 for _ in rtseg.stream(max_frames=3)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    where, count = proc.stdout.split()
    assert where.startswith(str(target)) and count == "3"


def test_load_engine_with_no_path_is_the_bundled_weights_from_any_folder(tmp_path, monkeypatch):
    import rtseg
    from rtseg.bundled import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("no bundled weights here")
    monkeypatch.chdir(tmp_path)
    engine = rtseg.load_engine()
    assert engine.meta.dataset == "camvid" and engine.name == "pytorch"
