"""Short real training runs on a synthetic folder data set: the loss falls, best.pt/last.pt
load with the right metadata, and --resume continues exactly where the run stopped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rtseg.formats.checkpoint import build_from_checkpoint, load_checkpoint
from rtseg.train.loop import TrainCallbacks, TrainConfig, train

# Tiny settings: 4 frames, 64x64 crops, batch 2 -> 2 steps per epoch, no worker processes.
TINY = ["--dataset", "folder", "--batch-size", "2", "--crop", "64x64", "--workers", "0", "--limit", "4",
        "--optimizer", "adamw", "--lr", "5e-3", "--quiet"]


@pytest.mark.slow
def test_two_epochs_lower_the_loss_and_write_loadable_checkpoints(cli, folder_data: Path, tmp_path: Path):
    out = tmp_path / "run"
    # also exercises bf16 autocast on the CPU and gradient clipping
    code, _, err = cli("train", *TINY, "--data-root", folder_data, "--out", out, "--epochs", "2",
                       "--amp", "bf16", "--clip-grad", "5")
    assert code == 0, err
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and all(r["steps"] == 2 for r in history)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert 0 <= history[1]["val_miou"] <= 1

    model, meta = build_from_checkpoint(out / "best.pt")
    assert not model.training and model.aux_heads is None  # aux heads trained (weight 0.4) but not shipped
    assert (meta.model, meta.num_classes, meta.dataset) == ("fastscnn", 3, "data")
    assert meta.class_names == ("red", "green", "blue") and meta.palette[0] == (255, 0, 0)
    assert meta.input_size == (64, 96)  # the val frames' size
    assert meta.extra["epoch"] in (1, 2) and meta.extra["val"]["miou"] == max(r["val_miou"] for r in history)
    assert meta.extra["train_config"]["crop"] == [64, 64]
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 64, 96)).shape == (1, 3, 64, 96)

    last = load_checkpoint(out / "last.pt")
    assert last["train"]["epoch"] == 2 and len(last["train"]["history"]) == 2 and "optimizer" in last["train"]
    assert any((out / "tensorboard").iterdir())  # scalars and prediction images were written


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddrnet23_slim", "bisenetv2", "unet"])
def test_train_each_network(cli, folder_data: Path, tmp_path: Path, name: str):
    """`rtseg train --model NAME`: one epoch with the paper's auxiliary heads; the checkpoint
    names the network (and its options) and loads without the heads."""
    out = tmp_path / name
    extra = ["--width", "8"] if name == "unet" else []
    code, _, err = cli("train", *TINY, "--data-root", folder_data, "--out", out, "--epochs", "1", "--model", name, *extra)
    assert code == 0, err
    history = json.loads((out / "history.json").read_text())
    assert np.isfinite(history[0]["train_loss"]) and 0 <= history[0]["val_miou"] <= 1
    model, meta = build_from_checkpoint(out / "best.pt")
    assert meta.model == name and meta.model_args == ({"width": 8} if name == "unet" else {})
    assert getattr(model, "aux_heads", None) is None
    assert meta.extra["train_config"]["aux_weight"] is None  # the network's paper weights
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 64, 96)).shape == (1, 3, 64, 96)


def test_width_only_for_networks_that_take_it(cli, folder_data: Path, tmp_path: Path):
    code, _, err = cli("train", *TINY, "--data-root", folder_data, "--out", tmp_path, "--model", "ddrnet23_slim", "--width", "64")
    assert code != 0 and "--width 64 is not allowed; use 0 with ddrnet23_slim" in " ".join(err.split())
    code, _, err = cli("train", *TINY, "--data-root", folder_data, "--out", tmp_path, "--model", "segformer")
    assert code != 0 and "--model 'segformer' is not allowed; use bisenetv2, ddrnet23_slim, fastscnn, unet" in " ".join(err.split())


def test_compile_wraps_only_the_training_step(cli, folder_data: Path, tmp_path: Path, monkeypatch):
    """--compile hands the training step's network to torch.compile (a stand-in here: compiling
    takes minutes); validation and the checkpoints keep the plain network."""
    calls: list = []

    class Compiled(torch.nn.Module):  # what torch.compile returns: a wrapper with _orig_mod
        def __init__(self, module):
            super().__init__()
            self._orig_mod = module

        def forward(self, x):
            calls.append("step")
            return self._orig_mod(x)

    def fake_compile(module, **kw):
        calls.append(kw)
        return Compiled(module)

    monkeypatch.setattr(torch, "compile", fake_compile)
    out = tmp_path / "run"
    code, _, err = cli("train", *TINY, "--data-root", folder_data, "--out", out, "--epochs", "1", "--compile")
    assert code == 0, err
    assert calls[0] == {"mode": "default"}  # on CUDA: reduce-overhead (CUDA graphs)
    assert calls.count("step") == 2  # both training steps ran through it; validation did not
    model, meta = build_from_checkpoint(out / "best.pt")  # plain parameter names: no _orig_mod prefix
    assert meta.extra["train_config"]["compile"] is True
    assert not any("_orig_mod" in k for k in load_checkpoint(out / "last.pt")["state_dict"])


class _Interrupt(Exception):
    pass


class _StopAt(TrainCallbacks):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        if epoch == self.epoch:
            raise _Interrupt


@pytest.mark.slow
def test_resume_continues_exactly_where_the_run_stopped(cli, folder_data: Path, tmp_path: Path):
    cfg = TrainConfig(dataset="folder", data_root=str(folder_data), epochs=2, batch_size=2, crop=(64, 64),
                      scale=(0.75, 1.5), workers=0, limit=4, optimizer="sgd", lr=0.02, warmup_epochs=0.5,
                      aux_weight=0.4, tensorboard=False)
    straight = train(replace_out(cfg, tmp_path / "straight"))

    stopped = tmp_path / "stopped"
    with pytest.raises(_Interrupt):  # killed at the start of epoch 2: last.pt holds epoch 1
        train(replace_out(cfg, stopped), _StopAt(2))
    assert load_checkpoint(stopped / "last.pt")["train"]["epoch"] == 1

    code, out, err = cli("train", "--resume", stopped / "last.pt")  # saved settings, saved folder
    assert code == 0, err
    out = " ".join(out.split())  # Rich wraps long lines at the terminal width
    assert f"resumed from {stopped / 'last.pt'} at epoch 2 of 2" in out
    history = json.loads((stopped / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    for a, b in zip(history, straight["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    b = load_checkpoint(stopped / "last.pt")["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-5, atol=1e-6), key


def replace_out(cfg: TrainConfig, out: Path) -> TrainConfig:
    from dataclasses import replace

    return replace(cfg, out_dir=str(out))


def test_train_messages_keep_bracketed_text(capsys):
    from rtseg.cli.train import _RichCallbacks

    _RichCallbacks(quiet=False).on_message("TensorBoard logging is off: install it with pip install 'rtseg[train]'")
    assert "pip install 'rtseg[train]'" in capsys.readouterr().out  # Rich markup would have eaten [train]


@pytest.mark.slow
def test_train_says_what_it_is_about_to_do_and_how_long_it_will_take(make_folder_data, tmp_path):
    root = make_folder_data(tmp_path / "data", n=12)
    said = []

    class Callbacks(TrainCallbacks):
        def on_message(self, text: str) -> None:
            said.append(text)

    train(TrainConfig(dataset="folder", data_root=str(root), out_dir=str(tmp_path / "run"), epochs=2, batch_size=2,
                      crop=(64, 64), workers=0, tensorboard=False), Callbacks())
    # the network, with its paper's auxiliary-head weights (the default --aux-weight)
    assert said[0].startswith("training fastscnn (auxiliary heads: 0.4, 0.4) on data 'train' (12 frames), "
                              "validating on 'val' (12 frames)")
    assert "cpu, mixed precision off; 2 epoch(s) of 6 steps of 2 64x64 crops" in said[0]
    assert any(m.startswith("about ") and " to go at " in m for m in said)
