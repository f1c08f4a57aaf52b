"""Confidence out: each frame's class probabilities kept when asked (Packet.probs, after the temporal
filter when it runs), Result.confidence / Result.scores in Python, --confidence DIR (8-bit PNGs),
--min-confidence P (unsure pixels become 255, "unknown"), --view confidence (a heat map); one line
for a model that gives class ids only."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_fakes import FakeEngine, ListSource, RecordingSink, fake_run  # noqa: E402
from test_temporal_stage import ScoresEngine  # noqa: E402

import rtseg  # noqa: E402
from rtseg.errors import RtsegError  # noqa: E402
from rtseg.pipeline.app import segment  # noqa: E402
from rtseg.pipeline.stages import engine_stages  # noqa: E402
from rtseg.pipeline.temporal import TemporalConfig  # noqa: E402


class HalfSure(ScoresEngine):
    """Scores sure (logit 10) on the left half of each frame and unsure (two classes tied) on the right."""

    def infer_scores(self, batch):
        ids, scores = super().infer_scores(batch)
        w = scores.shape[3]
        scores[:, :, :, w // 2:] = 0
        scores[:, 0, :, w // 2:] = scores[:, 1, :, w // 2:] = 5
        return ids, scores


@pytest.mark.parametrize("temporal", [None, TemporalConfig()])
def test_kept_probabilities_give_the_confidence_at_any_size(temporal):
    engine = HalfSure()
    run = fake_run(ListSource(3, size=(48, 64)), engine, temporal=temporal, scores=True)
    sink = RecordingSink()
    segment(run, sink, picture=False)
    p = sink.packets[0]
    assert p.probs is not None and p.probs.shape[2] == engine.meta.num_classes
    assert np.allclose(p.probs.sum(axis=2), 1, atol=1e-3)
    conf = p.confidence()
    assert conf.shape == (48, 64) and conf[:, :20].min() > 0.98 and conf[:, 44:].max() < 0.51  # 10 vs 0 logits; a tie


def test_min_confidence_paints_the_unsure_pixels_unknown():
    engine = HalfSure()
    stages = engine_stages(engine, None, min_confidence=0.6)
    run = fake_run(ListSource(2, size=(48, 64)), engine)
    sink = RecordingSink()
    from rtseg.pipeline.runner import run as run_pipeline

    run_pipeline(run.source, stages, sink)
    ids = sink.packets[0].ids  # at the inference size
    q = ids.shape[1] // 4
    assert (ids[:, -q:] == 255).all() and (ids[:, :q] != 255).all()


def test_a_model_without_scores_says_so_in_one_line():
    with pytest.raises(RtsegError, match="confidence needs class scores, and fake gives class ids only") as info:
        engine_stages(FakeEngine(), None, keep_scores=True)
    assert "\n" not in str(info.value)


def test_the_confidence_view_draws_a_heat_map():
    engine = HalfSure()
    run = fake_run(ListSource(2, size=(48, 64)), engine, outputs={"view": "confidence", "alpha": 1.0}, scores=True)
    sink = RecordingSink()
    sink.takes_i420 = False  # the picture in BGR, to read its colours
    segment(run, sink)
    picture = sink.packets[0].picture
    assert sink.packets[0].picture_format == "bgr"
    sure, unsure = picture[:, :16].reshape(-1, 3).mean(axis=0), picture[:, 48:].reshape(-1, 3).mean(axis=0)
    assert sure[2] > 200 and sure[1] > 200 and unsure.sum() < sure.sum()  # inferno: yellow where sure, darker where not


@pytest.mark.slow
def test_the_cli_writes_confidence_pngs_and_unknown_masks(rtseg_cli, tmp_path):
    from rtseg.bundled import DEMO_CLIP

    code, _, err = rtseg_cli("run", DEMO_CLIP, "--runtime", "pytorch", "--size", "180x240", "--max-frames", "3",
                             "--confidence", tmp_path / "conf", "--min-confidence", "0.5", "--masks", tmp_path / "m",
                             "-o", tmp_path / "o.mp4", "--temporal", "off")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "conf").glob("*.png"))
    assert names == ["000000.png", "000001.png", "000002.png"]
    conf = cv2.imread(str(tmp_path / "conf" / names[0]), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(tmp_path / "m" / names[0]), cv2.IMREAD_UNCHANGED)
    assert conf.shape == mask.shape == (360, 480) and conf.dtype == np.uint8 and conf.max() == 255
    unknown = mask == 255
    assert 0 < unknown.mean() < 0.2  # the class boundaries, not the picture
    # the masks' unknown pixels are those under 0.5 (ids decided at the inference size, then enlarged)
    assert ((conf < 128) == unknown).mean() > 0.98


@pytest.mark.slow
def test_stream_gives_confidence_and_scores_when_asked():
    results = list(rtseg.stream(runtime="pytorch", device="cpu", size="180x240", max_frames=2, scores=True, view=None))
    r = results[0]
    assert r.confidence.shape == r.frame.shape[:2] and 0 <= r.confidence.min() and r.confidence.max() <= 1
    assert r.scores.shape[0] == len(r.classes) and np.allclose(r.scores.sum(axis=0), 1, atol=1e-3)
    plain = next(iter(rtseg.stream(runtime="pytorch", device="cpu", size="180x240", max_frames=1, view=None)))
    with pytest.raises(RtsegError, match=r"scores=True"):
        plain.confidence
