"""The shipped CamVid weights reproduce models/README.md's val figures (needs ../shared/data)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtseg.bundled import DEFAULT_WEIGHTS

RECORD = Path(__file__).resolve().parents[1] / "models" / "fastscnn_camvid_val.json"


@pytest.mark.slow
def test_eval_of_shipped_weights_reproduces_the_recorded_miou(camvid_root: Path) -> None:
    from rtseg.train.data import build_dataset
    from rtseg.train.evaluate import evaluate, load_predictor

    recorded = json.loads(RECORD.read_text())
    predictor = load_predictor(DEFAULT_WEIGHTS)
    cm = evaluate(predictor, build_dataset("camvid", camvid_root, "val"))
    got = cm.compute(predictor.meta.class_names)
    assert recorded["frames"] == 101
    assert got["miou"] == pytest.approx(recorded["miou"], abs=1e-3)
    assert got["pixel_acc"] == pytest.approx(recorded["pixel_acc"], abs=1e-3)
    # models/README.md quotes this figure; keep the two in step.
    readme = (RECORD.parent / "README.md").read_text()
    assert f"**Val mIoU {recorded['miou']:.3f}**" in readme


def test_shipped_weights_carry_camvid_metadata() -> None:
    from rtseg.formats.checkpoint import load_checkpoint

    meta = load_checkpoint(DEFAULT_WEIGHTS)["meta"]
    assert (meta.model, meta.dataset, meta.num_classes) == ("fastscnn", "camvid", 11)
    assert meta.class_names[0] == "Sky" and meta.input_size == (360, 480)  # CamVid's own frame size: see models/README.md
    # It says what it was trained on: val is inside its training data (models/README.md).
    assert meta.extra["train_config"]["train_split"] == "train+val" and "train+val" in meta.extra["trained"]["splits"]
