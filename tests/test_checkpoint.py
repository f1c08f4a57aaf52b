"""The checkpoint format: metadata round trip, and one-line errors for files that are not rtseg
checkpoints (including a pickle that would run code: weights_only refuses it)."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.formats.checkpoint import build_from_checkpoint, load_checkpoint, save_checkpoint
from rtseg.meta import ModelMeta


def test_metadata_and_weights_round_trip(tmp_path):
    torch.manual_seed(1)
    net = rtseg.create_model("fastscnn", num_classes=11).eval()
    meta = ModelMeta.for_dataset("camvid", input_size=(360, 480), extra={"val_miou": 0.5})
    path = save_checkpoint(tmp_path / "m.pt", net, meta, epoch=3)
    ckpt = load_checkpoint(path)
    assert ckpt["meta"] == meta and ckpt["train"] == {"epoch": 3}
    rebuilt, meta2 = build_from_checkpoint(path)
    assert meta2 == meta and not rebuilt.training
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(x), net(x))


class _RunsCode:
    """Unpickling this calls os.system: what a malicious 'weights' file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["corrupt"] = tmp_path / "corrupt.pt"
    files["corrupt"].write_bytes(b"PK\x03\x04 definitely not a zip archive" * 10)
    files["truncated"] = tmp_path / "truncated.pt"
    good = save_checkpoint(tmp_path / "good.pt", rtseg.create_model("fastscnn", num_classes=3),
                           ModelMeta.for_dataset("camvid"))
    files["truncated"].write_bytes(good.read_bytes()[:5000])
    files["foreign"] = tmp_path / "foreign.pt"  # a plain state dict, as most public weights are
    torch.save(rtseg.create_model("fastscnn", num_classes=3).state_dict(), files["foreign"])
    files["code"] = tmp_path / "code.pt"
    torch.save({"format": "rtseg-checkpoint/1", "payload": _RunsCode(tmp_path / "pwned")}, files["code"])
    files["text"] = tmp_path / "text.pt"
    files["text"].write_text("junk\n")  # what `echo junk > junk.pt` makes
    files["random"] = tmp_path / "random.pt"
    files["random"].write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)))
    files["empty"] = tmp_path / "empty.pt"
    files["empty"].write_bytes(b"")
    files["zip"] = tmp_path / "zip.pt"
    with zipfile.ZipFile(files["zip"], "w") as zf:
        zf.writestr("notes.txt", "not weights")
    return files


# Each failure is one whole sentence saying what the file is (PyTorch's own messages run to many lines).
REASONS = {
    "corrupt": "it is a truncated or damaged PyTorch checkpoint (its zip archive is incomplete).",
    "truncated": "it is a truncated or damaged PyTorch checkpoint (its zip archive is incomplete).",
    "foreign": "is a PyTorch file but not an rtseg checkpoint",
    "code": "it is a PyTorch file holding Python objects besides tensors, which rtseg does not load (loading them could run code).",
    "text": "it is a text file, not a PyTorch checkpoint.",
    "random": "it is not a PyTorch checkpoint.",
    "empty": "it is empty.",
    "zip": "it is a zip archive, but not a PyTorch checkpoint.",
}


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_bad_files_give_one_line_errors(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(RtsegError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and REASONS[kind] in message
    assert not (tmp_path / "pwned").exists()  # weights_only=True: the payload never ran


def test_missing_file():
    with pytest.raises(RtsegError, match="checkpoint not found"):
        load_checkpoint("/nonexistent/weights.pt")


def test_weights_that_do_not_fit_the_network(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", rtseg.create_model("fastscnn", num_classes=3),
                           ModelMeta.for_dataset("camvid"))  # 11 classes in the metadata, 3 in the weights
    with pytest.raises(RtsegError, match="do not fit fastscnn with 11 classes"):
        build_from_checkpoint(path)


@pytest.mark.parametrize("kind", ["corrupt", "code", "text"])  # a subprocess each: keep the list short
def test_cli_exits_2_with_one_line(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    proc = subprocess.run([sys.executable, "-c", "from rtseg.cli import main; main()", "export", "--weights",
                           str(path), "--output", str(tmp_path / "x.onnx")], capture_output=True, text=True,
                          timeout=1200)  # generous: CI machines are busy
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "x.onnx").exists()
