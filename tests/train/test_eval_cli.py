"""`rtseg eval` writes the JSON docs/architecture.md lists; `rtseg train` / `rtseg eval` errors are one line, exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rtseg.classes import CAMVID_CLASSES


def test_eval_json_on_camvid_val(cli, tiny_checkpoint: Path, camvid_root: Path, tmp_path: Path):
    path = tmp_path / "eval.json"
    code, out, err = cli("eval", "--weights", tiny_checkpoint, "--dataset", "camvid", "--data-root", camvid_root,
                         "--split", "val", "--limit", "3", "--json", path)
    assert code == 0, err
    doc = json.loads(path.read_text())
    assert list(doc) == ["dataset", "split", "frames", "miou", "pixel_acc", "mean_dice", "per_class_iou"]
    assert (doc["dataset"], doc["split"], doc["frames"]) == ("camvid", "val", 3)
    assert list(doc["per_class_iou"]) == list(CAMVID_CLASSES)
    for v in [doc["miou"], doc["pixel_acc"], doc["mean_dice"], *doc["per_class_iou"].values()]:
        assert v is None or 0.0 <= v <= 1.0
    assert "Bicyclist" in out and "mIoU" in out  # the Rich table

    # the same checkpoint as an engine (rtseg.load_engine) at the frames' own size agrees
    code, out, err = cli("eval", "--engine", tiny_checkpoint, "--data-root", camvid_root, "--limit", "3",
                         "--size", "360x480", "--json", tmp_path / "engine.json")
    assert code == 0, err
    via_engine = json.loads((tmp_path / "engine.json").read_text())
    assert via_engine["pixel_acc"] == pytest.approx(doc["pixel_acc"], abs=2e-3)

    # pixel accuracy recomputed independently: float network on normalised input, numpy counting
    from rtseg.formats.checkpoint import build_from_checkpoint
    from rtseg.train.data import IGNORE, build_dataset, to_tensor

    model, _ = build_from_checkpoint(tiny_checkpoint)
    ds = build_dataset("camvid", camvid_root, "val")
    hit = total = 0
    with torch.inference_mode():
        for i in range(3):
            img, label = ds.read(i)
            pred = model(to_tensor(img)[None]).argmax(1)[0].numpy()
            keep = label != IGNORE
            hit, total = hit + int((pred[keep] == label[keep]).sum()), total + int(keep.sum())
    assert doc["pixel_acc"] == pytest.approx(hit / total, abs=2e-3)  # near-ties may flip a few pixels


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    text = " ".join(err.split())
    assert text.startswith("error:") and "Traceback" not in err, err
    assert len(lines) <= 2, err  # one logical line (Rich may wrap it once at 80 columns)
    for needle in needles:
        assert needle in text, err


def test_eval_class_count_mismatch(cli, tiny_checkpoint: Path, folder_data: Path):
    code, _, err = cli("eval", "--weights", tiny_checkpoint, "--dataset", "folder", "--data-root", folder_data, "-q")
    _one_line_error(code, err, "the model has 11 classes", "has 3")


def test_class_count_is_checked_before_the_checkpoint_is_exported(tiny_checkpoint: Path, folder_data: Path):
    from rtseg.errors import RtsegError
    from rtseg.train.data import build_dataset
    from rtseg.train.evaluate import load_predictor

    said: list[str] = []
    info = build_dataset("folder", folder_data, "val").info
    with pytest.raises(RtsegError, match="the model has 11 classes .* has 3"):
        load_predictor(tiny_checkpoint, runtime="onnxruntime", size=(64, 96), note=said.append, data=info)
    assert said == []  # no "exporting ... to ONNX" notice: nothing was exported


@pytest.mark.parametrize("args, needles", [
    (["eval", "--weights", "a.pt", "--engine", "b.onnx"], ["not both"]),
    (["eval", "--weights", "missing.pt", "--dataset", "folder", "--data-root", "{data}"], ["not found", "missing.pt"]),
    (["eval", "--weights", "{ckpt}", "--dataset", "folder", "--data-root", "{data}", "--size", "12x"], ["12x"]),
    (["eval", "--weights", "{ckpt}", "--data-root", "{data}/nope"], ["data root not found"]),
    (["train", "--dataset", "kitti", "--data-root", "{data}"], ["kitti", "camvid, cityscapes, folder"]),
    (["train", "--dataset", "folder", "--data-root", "{data}", "--crop", "16x16"], ["--crop", "16x16"]),
    (["train", "--dataset", "folder", "--data-root", "{data}", "--crop", "big"], ["--crop", "'big'"]),
    (["train", "--dataset", "folder", "--data-root", "{data}", "--loss", "hinge"], ["--loss", "ce_dice"]),
    (["train", "--dataset", "folder", "--data-root", "{data}", "--amp", "fp16", "--device", "cpu", "--limit", "2"],
     ["--amp fp16 needs CUDA"]),
    (["train", "--dataset", "folder", "--data-root", "{data}", "--batch-size", "1"], ["--batch-size", ">= 2"]),
    (["train", "--dataset", "folder", "--data-root", "{data}", "--val-split", "test"], ["'test' image folder not found"]),
    (["train", "--resume", "{ckpt}"], ["records no training configuration"]),
])
def test_cli_errors_are_one_line_exit_2(cli, tiny_checkpoint: Path, folder_data: Path, args, needles):
    args = [a.format(data=folder_data, ckpt=tiny_checkpoint) for a in args]
    code, _, err = cli(*args)
    _one_line_error(code, err, *needles)


def test_train_reports_a_bad_label_in_one_line(cli, folder_data: Path, tmp_path: Path):
    import cv2

    cv2.imwrite(str(folder_data / "train" / "labels" / "f001.png"), np.full((64, 96), 9, np.uint8))
    code, _, err = cli("train", "--dataset", "folder", "--data-root", folder_data, "--out", tmp_path / "r",
                       "--limit", "4", "--batch-size", "2", "--crop", "64x64", "--workers", "1", "--quiet")
    _one_line_error(code, err, "f001.png", "values [9]")


def test_a_checkpoint_is_evaluated_at_the_size_its_training_validated_at(tiny_checkpoint, tmp_path):
    from dataclasses import replace

    from rtseg.formats.checkpoint import build_from_checkpoint, save_checkpoint
    from rtseg.train.evaluate import load_predictor

    assert load_predictor(tiny_checkpoint).size is None  # no --val-size recorded: each frame's own size
    net, meta = build_from_checkpoint(tiny_checkpoint)
    trained = replace(meta, extra={**meta.extra, "train_config": {"val_size": [96, 128]}})
    path = save_checkpoint(tmp_path / "val_size.pt", net, trained)
    assert load_predictor(path).size == (96, 128)
    assert load_predictor(path, size=(64, 64)).size == (64, 64)  # --size still wins


def test_eval_of_an_onnx_engine_on_the_runtime_asked_for(cli, tiny_checkpoint: Path, camvid_root: Path, tmp_path: Path,
                                                         monkeypatch):
    from rtseg.formats.checkpoint import build_from_checkpoint

    # a cache of its own: another test may have exported the same checkpoint at this size already
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    from rtseg.export.onnx import export_onnx

    model, meta = build_from_checkpoint(tiny_checkpoint)
    onnx_file = export_onnx(model, meta, tmp_path / "m.onnx", size=(360, 480))
    code, out, err = cli("eval", "--engine", onnx_file, "--runtime", "onnxruntime", "--data-root", camvid_root,
                         "--limit", "2", "--json", tmp_path / "ort.json")
    assert code == 0, err
    assert "onnxruntime on cpu" in out
    code, _, err = cli("eval", "--engine", tiny_checkpoint, "--size", "360x480", "--runtime", "pytorch",
                       "--data-root", camvid_root, "--limit", "2", "--json", tmp_path / "pt.json")
    assert code == 0, err
    ort, pt = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ort", "pt"))
    assert ort["pixel_acc"] == pytest.approx(pt["pixel_acc"], abs=2e-3)  # fp32 both: the same ids
    # the .pt itself on ONNX Runtime: exported once into the cache, the same ids as PyTorch fp32
    code, out, err = cli("eval", "--engine", tiny_checkpoint, "--size", "360x480", "--runtime", "onnxruntime",
                         "--data-root", camvid_root, "--limit", "2", "--json", tmp_path / "pt_ort.json")
    assert code == 0 and "onnxruntime on cpu" in out and "exporting fastscnn_untrained.pt to ONNX" in out + err, err
    pt_ort = json.loads((tmp_path / "pt_ort.json").read_text())
    assert pt_ort["pixel_acc"] == pytest.approx(pt["pixel_acc"], abs=2e-3)
    code, _, err = cli("eval", "--engine", onnx_file, "--runtime", "pytorch", "--data-root", camvid_root)
    assert code == 2 and "--runtime pytorch needs the .pt checkpoint" in err and "Traceback" not in err
