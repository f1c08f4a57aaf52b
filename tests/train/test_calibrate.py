"""--calibrate: the logit offset that undoes class weights is scored on val, folded into the
classifier's bias (the network's output moves by exactly the offset) and written to best.pt."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from rtseg.formats.checkpoint import build_from_checkpoint, load_checkpoint
from rtseg.errors import RtsegError
from rtseg.nets import create_model
from rtseg.train.calibrate import final_conv, fold_logit_offset, tune_logit_offset
from rtseg.train.loop import TrainConfig, train


def test_folding_moves_the_logits_by_the_offset_at_any_size():
    torch.manual_seed(0)
    net = create_model("fastscnn", num_classes=5).eval()
    x = torch.randn(1, 3, 100, 77)  # not a multiple of 8: the logits are upsampled bilinearly
    log_w = torch.tensor([0.1, 2.0, 0.5, 3.0, 1.0])
    with torch.no_grad():
        before = net(x)
        fold_logit_offset(net, log_w, 0.5)
        after = net(x)
    torch.testing.assert_close(after, before - 0.5 * log_w.view(1, -1, 1, 1), rtol=0, atol=1e-4)


class _Logits(nn.Module):
    """Logits that know the label (margin 1) but favour class 2 by 1.6 everywhere: every pixel
    comes out as class 2 until more than 0.6 is taken off class 2's logit."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        labels = images[:, 0].long()
        logits = nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
        logits[:, 2] += 1.6
        return logits


def test_tuning_finds_the_offset_that_undoes_the_bias():
    labels = torch.randint(0, 3, (4, 16, 16))
    images = labels[:, None].float().expand(-1, 3, -1, -1).contiguous()
    loader = DataLoader(TensorDataset(images, labels), batch_size=1)
    scores = tune_logit_offset(_Logits(), loader, torch.tensor([0.0, 0.0, 2.0]), 3, "cpu")
    assert list(scores) == [i / 8 for i in range(9)]
    assert scores[0.0] < 0.5 and scores[0.25] < 0.5  # 0 and 0.5 taken off: everything is still class 2
    assert all(scores[t] == 1.0 for t in scores if t >= 0.375)  # 0.75 or more taken off: every pixel right
    assert max(scores, key=scores.get) == 0.375  # the smallest offset that does it


def test_a_network_without_a_biased_final_conv_is_refused():
    with pytest.raises(RtsegError, match="1x1 conv with a bias"):
        final_conv(nn.Sequential(nn.Conv2d(3, 4, 1)))


def _tiny(folder_data: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(dataset="folder", data_root=str(folder_data), out_dir=str(out), epochs=2, batch_size=2,
                       crop=(64, 64), workers=0, limit=4, optimizer="adamw", lr=5e-3, aux_weight=0,
                       class_weights="enet", tensorboard=False, **kw)


@pytest.fixture
def trained_run(folder_data: Path, tmp_path: Path) -> Path:
    """A finished 2-epoch run with ENet class weights, not calibrated."""
    out = tmp_path / "run"
    train(_tiny(folder_data, out))
    assert "calibration" not in load_checkpoint(out / "best.pt")["meta"].extra
    return out


@pytest.mark.slow
def test_calibrate_on_a_finished_run_scores_every_offset(cli, trained_run: Path):
    # The run is over; --resume with --calibrate only calibrates (the way to calibrate an old run).
    code, stdout, err = cli("train", "--resume", trained_run / "last.pt", "--calibrate")
    assert code == 0, err
    stdout = " ".join(stdout.split())
    assert "logit offset on val: tau 0 mIoU" in stdout and "tau 1 mIoU" in stdout
    done = load_checkpoint(trained_run / "best.pt")["meta"].extra.get("calibration")
    # Whether an offset helps this tiny run is up to its training; each outcome must be consistent.
    assert (done is None) == ("no offset beats none" in stdout)
    assert (done is None) != (trained_run / "best_uncalibrated.pt").exists()


@pytest.mark.slow
def test_calibration_is_folded_into_best_pt(cli, trained_run: Path, monkeypatch):
    import rtseg.train.calibrate as calibrate

    scores = {t: 0.5 + (0.1 if t == 0.5 else 0.0) for t in (0.0, 0.25, 0.5, 0.75, 1.0)}  # tau 0.5 wins
    monkeypatch.setattr(calibrate, "tune_logit_offset", lambda *a, **k: scores)
    code, stdout, err = cli("train", "--resume", trained_run / "last.pt", "--calibrate")
    assert code == 0, err
    best = load_checkpoint(trained_run / "best.pt")
    done = best["meta"].extra["calibration"]
    assert done["tau"] == 0.5 and done["val_miou_before"] == 0.5
    assert best["meta"].extra["val"]["miou"] == pytest.approx(done["val_miou_after"])  # re-measured, not assumed
    # best_uncalibrated.pt is the file as trained; best.pt differs from it in the final bias only,
    # by -0.5 * log(ENet weights).
    raw = load_checkpoint(trained_run / "best_uncalibrated.pt")
    assert "calibration" not in raw["meta"].extra
    offsets = torch.tensor(done["offsets"])
    assert torch.all(offsets < 0)  # ENet weights are > 1, so every class's logit goes down
    for key, value in best["state_dict"].items():
        if key == "classifier.3.bias":
            torch.testing.assert_close(value, raw["state_dict"][key] + offsets)
        else:
            assert torch.equal(value, raw["state_dict"][key]), key
    build_from_checkpoint(trained_run / "best.pt")  # still loads for rtseg run
    # A second pass does not stack a second offset.
    code, stdout, err = cli("train", "--resume", trained_run / "last.pt", "--calibrate")
    assert code == 0 and "calibrated already" in " ".join(stdout.split())
    torch.testing.assert_close(load_checkpoint(trained_run / "best.pt")["state_dict"]["classifier.3.bias"],
                               best["state_dict"]["classifier.3.bias"])


@pytest.mark.slow
def test_calibrate_without_class_weights_says_so(cli, folder_data: Path, tmp_path: Path):
    out = tmp_path / "run"
    code, stdout, err = cli("train", "--dataset", "folder", "--data-root", folder_data, "--out", out, "--epochs", "1",
                            "--batch-size", "2", "--crop", "64x64", "--workers", "0", "--limit", "4",
                            "--aux-weight", "0", "--no-tensorboard", "--calibrate")
    assert code == 0, err
    assert "no class weights to undo" in " ".join(stdout.split())
    assert not (out / "best_uncalibrated.pt").exists()
