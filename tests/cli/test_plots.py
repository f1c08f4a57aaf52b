"""Pictures: ``rtseg bench --plot`` (the per-stage timeline), and the confusion matrix and per-class
IoU bars ``rtseg eval --plots`` writes; drawn with OpenCV, nothing more to install."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from pipeline_fakes import write_video  # noqa: E402
from test_run import rtseg  # noqa: E402,F401  (the fixture: the console entry point with the fake engine)

from rtseg.plots import confusion_png, iou_bars_png  # noqa: E402


def test_bench_plots_the_pipelined_runs_timeline(rtseg, tmp_path):
    clip = write_video(tmp_path / "in.mp4", 12)
    res = rtseg("bench", clip, "--frames", "10", "--rounds", "1", "--plot", tmp_path / "t.png")
    assert res.returncode == 0, res.stderr
    img = cv2.imread(str(tmp_path / "t.png"))
    assert img is not None and img.shape[1] == 1600 and (img < 250).any(axis=2).mean() > 0.02  # lanes drawn (a fast fake run: thin boxes)
    res = rtseg("bench", clip, "--plot", tmp_path / "nope" / "t.png")
    assert res.returncode == 2 and "--plot" in res.stderr and "does not exist" in res.stderr


def test_the_confusion_matrix_rows_sum_to_one_and_the_bars_follow_the_ious():
    m = np.array([[8, 2, 0], [0, 5, 5], [0, 0, 10]])
    img = confusion_png(m, ["road", "car", "sky"])
    assert img.shape[0] > 100 and img.shape[1] > 100
    bars = iou_bars_png({"road": 0.9, "car": 0.1, "sky": None}, [(128, 64, 128), (0, 0, 142), (70, 130, 180)])
    road = (np.abs(bars.astype(int) - (128, 64, 128)[::-1]).sum(axis=2) < 10).sum()
    car = (np.abs(bars.astype(int) - (0, 0, 142)[::-1]).sum(axis=2) < 10).sum()
    assert road > 5 * car > 0  # a bar's length is its IoU
