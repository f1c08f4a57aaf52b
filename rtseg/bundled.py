"""Paths of what ships with rtseg: the CamVid weights, the demo clip and the benchmark frame.

They live in the repository (``models/``, ``assets/``), so they are found from a clone or an
editable install (``pip install -e .``)."""
from __future__ import annotations

from pathlib import Path

from rtseg.errors import RtsegError

__all__ = ["REPO_ROOT", "DEFAULT_WEIGHTS", "DEMO_CLIP", "BENCH_FRAME", "bundled"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO_ROOT / "models" / "fastscnn_camvid.pt"
DEMO_CLIP = REPO_ROOT / "assets" / "demo" / "camvid_0016E5_val_15fps.mp4"
BENCH_FRAME = REPO_ROOT / "assets" / "bench" / "street_1024x2048.jpg"


def bundled(path: Path, what: str) -> Path:
    """``path`` if it exists, else a one-line error saying how to get it."""
    if not path.is_file():
        raise RtsegError(f"the bundled {what} is missing ({path}); install rtseg from a clone with "
                         f"'pip install -e .', or name a file explicitly")
    return path
