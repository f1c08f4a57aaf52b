"""Paths of what ships with rtseg: the CamVid weights, the demo clip and the benchmark frame.

They live in the repository (``models/``, ``assets/``) and travel in the wheel as package data
(``rtseg/_models``, ``rtseg/_assets``), so they are found from a clone, an editable install and
a plain ``pip install .`` or wheel alike, whatever the working directory."""
from __future__ import annotations

from pathlib import Path

from rtseg.errors import RtsegError

__all__ = ["REPO_ROOT", "DEFAULT_WEIGHTS", "DEMO_CLIP", "BENCH_FRAME", "bundled"]

REPO_ROOT = Path(__file__).resolve().parents[1]
_PACKAGE = Path(__file__).resolve().parent


def _find(folder: str, data: str, *parts: str) -> Path:
    """``<repo>/<folder>/...`` in a clone, else ``rtseg/<data>/...`` of an installed wheel."""
    in_repo = REPO_ROOT.joinpath(folder, *parts)
    if in_repo.is_file():
        return in_repo
    installed = _PACKAGE.joinpath(data, *parts)
    return installed if installed.is_file() else in_repo


DEFAULT_WEIGHTS = _find("models", "_models", "fastscnn_camvid.pt")
DEMO_CLIP = _find("assets", "_assets", "demo", "camvid_0016E5_val_15fps.mp4")
BENCH_FRAME = _find("assets", "_assets", "bench", "street_1024x2048.jpg")


def bundled(path: Path, what: str) -> Path:
    """``path`` if it exists, else a one-line error saying how to get it."""
    if not path.is_file():
        raise RtsegError(f"the bundled {what} is missing ({path}); reinstall rtseg (pip install . from a clone "
                         f"brings it), or name a file explicitly")
    return path
