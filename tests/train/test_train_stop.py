"""A training run that is stopped keeps its work: the folder and config.json from the first second;
Ctrl-C, SIGTERM and SIGHUP finish the step, save a last.pt that resumes inside the same epoch
(exactly: the same weights as the unbroken run), say the resume command, and exit 130/143/129;
a stop before the validation keeps the finished epoch; a second signal ends it at once; under
DDP every rank stops at the same step."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rtseg.formats.checkpoint import load_checkpoint
from rtseg.train.loop import TrainCallbacks, TrainConfig, TrainingStopped, train

ROOT = Path(__file__).resolve().parents[2]


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(dataset="folder", data_root=str(data), out_dir=str(out), epochs=2, batch_size=2, crop=(64, 64),
                scale=(0.75, 1.5), workers=0, limit=8, optimizer="sgd", lr=0.02, warmup_epochs=0.5, aux_weight=0.4,
                tensorboard=False)
    return TrainConfig(**{**base, **kw})


class _StopAt(TrainCallbacks):
    """Sets the stop as a signal handler would, after ``epoch``'s step ``step`` (None: at the epoch's end)."""

    def __init__(self, stop: threading.Event, epoch: int, step: int | None):
        self.stop, self.epoch, self.step = stop, epoch, step

    def on_step(self, epoch: int, step: int, loss: float, lr: float) -> None:
        if (epoch, step) == (self.epoch, self.step):
            self.stop.set()

    def on_epoch_end(self, epoch: int, train_loss: float, seconds: float) -> None:
        if epoch == self.epoch and self.step is None:
            self.stop.set()


@pytest.fixture
def data(make_folder_data, tmp_path) -> Path:
    return make_folder_data(tmp_path / "data", n=8)


@pytest.mark.slow
def test_a_stop_inside_an_epoch_resumes_to_the_same_weights(data, tmp_path):
    straight = train(_cfg(data, tmp_path / "straight"))
    stop = threading.Event()
    with pytest.raises(TrainingStopped) as info:  # after step 1 (0-based) of epoch 2's 4
        train(_cfg(data, tmp_path / "stopped"), _StopAt(stop, 2, 1), stop=stop)
    assert (info.value.epoch, info.value.step) == (2, 2)
    saved = load_checkpoint(tmp_path / "stopped" / "last.pt")["train"]
    assert saved["epoch"] == 1 and saved["step"] == 2 and len(saved["history"]) == 1
    resumed = train(replace(_cfg(data, tmp_path / "stopped"), resume=str(tmp_path / "stopped" / "last.pt")))
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    for a, b in zip(resumed["history"], straight["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "stopped" / "last.pt")["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-5, atol=1e-6), key


def test_a_stop_before_the_validation_keeps_the_finished_epoch(data, tmp_path):
    stop = threading.Event()
    with pytest.raises(TrainingStopped) as info:
        train(_cfg(data, tmp_path / "out", epochs=3, val_every=1), _StopAt(stop, 1, None), stop=stop)
    assert (info.value.epoch, info.value.step) == (1, 0)
    saved = load_checkpoint(tmp_path / "out" / "last.pt")["train"]
    assert saved["epoch"] == 1 and saved["step"] == 0 and [r["epoch"] for r in saved["history"]] == [1]


def _start(data: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rtseg.cli", "train", "--dataset", "folder", "--data-root", str(data), "--out",
           str(out), "--epochs", "500", "--val-every", "1000", "--batch-size", "2", "--crop", "64x64", "--workers", "0",
           "--limit", "8", "--no-tensorboard", "--quiet"]
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_saves_says_how_to_resume_and_exits_with_its_code(data, tmp_path, signum, code):
    out = tmp_path / "run"
    proc = _start(data, out)
    _wait_for(out / "config.json", proc)  # the folder and the settings from the start
    _wait_for(out / "last.pt", proc)  # an epoch done: the run is in its steps
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "finishing this step" in err and f"Resume with: rtseg train --resume {out / 'last.pt'}" in err
    saved = load_checkpoint(out / "last.pt")["train"]
    assert saved["epoch"] >= 1 and saved["epoch"] < 500
    again = subprocess.run([sys.executable, "-m", "rtseg.cli", "train", "--resume", str(out / "last.pt"),
                            "--data-root", str(data), "--epochs", str(saved["epoch"] + 1), "--quiet"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert load_checkpoint(out / "last.pt")["train"]["epoch"] == saved["epoch"] + 1


@pytest.mark.slow
def test_a_second_signal_stops_at_once(data, tmp_path, monkeypatch):
    """The first signal waits for the step; a second one ends the run where it is (exit 130),
    with the last saved epoch intact."""
    out = tmp_path / "run"
    proc = _start(data, out)
    _wait_for(out / "last.pt", proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert load_checkpoint(out / "last.pt")["train"]["epoch"] >= 1  # still loads: saves are atomic


def _rank(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    from rtseg.train.dist import DistInfo
    from rtseg.train.stopping import stop_agreed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    stop = threading.Event()
    if rank == 0:
        stop.set()  # only rank 0 got the signal
    results[rank] = (stop_agreed(threading.Event(), DistInfo(rank, 2, rank)), stop_agreed(stop, DistInfo(rank, 2, rank)))
    dist.destroy_process_group()


@pytest.mark.slow
def test_under_ddp_every_rank_agrees_on_a_stop_one_rank_got():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(port, results), nprocs=2, join=True)
    assert dict(results) == {0: (False, True), 1: (False, True)}
