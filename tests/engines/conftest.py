"""Shared by the engine tests: the weights they run (their ONNX exports: onnx_exports.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rtseg.bundled import DEFAULT_WEIGHTS


@pytest.fixture(scope="session")
def weights(tiny_checkpoint) -> Path:
    """The bundled CamVid weights when they exist (trained: realistic class boundaries), else an
    untrained network."""
    return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else tiny_checkpoint

