"""`rtseg train` under torchrun: 2 CPU processes on the gloo backend, DistributedDataParallel,
a sharded sampler, and logs and checkpoints from rank 0 only."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rtseg.formats.checkpoint import build_from_checkpoint


@pytest.mark.slow
def test_two_process_gloo_run(cli, folder_data: Path, tmp_path: Path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rtseg.cli", "train", "--dataset", "folder", "--data-root", str(folder_data), "--out", str(out),
           "--epochs", "1", "--batch-size", "2", "--crop", "64x64", "--workers", "0", "--limit", "4",
           "--optimizer", "adamw", "--lr", "5e-3", "--no-tensorboard"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0 alone prints and writes
    assert proc.stdout.count("epoch 1: train loss") == 1 and proc.stdout.count("epoch 1: val mIoU") == 1
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "history.json", "last.pt"]
    history = json.loads((out / "history.json").read_text())
    # 4 frames sharded over 2 ranks, batch 2: one step each (a single process takes two)
    assert history[0]["steps"] == 1
    _, meta = build_from_checkpoint(out / "best.pt")
    assert meta.num_classes == 3
    # validation was sharded and the confusion matrices summed: the figures are those of one
    # process evaluating all 4 val frames with the saved weights
    code, _, err = cli("eval", "--weights", out / "best.pt", "--dataset", "folder", "--data-root", folder_data,
                       "--limit", "4", "--json", tmp_path / "eval.json", "--quiet")
    assert code == 0, err
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert ev["frames"] == 4
    assert ev["pixel_acc"] == pytest.approx(history[0]["val_pixel_acc"], abs=1e-6)
    assert ev["miou"] == pytest.approx(history[0]["val_miou"], abs=1e-6)
