"""``rtseg eval --video CLIP``: a clip through the app's own pipeline (read, transform, infer and,
with --temporal on, the temporal stage: what ``rtseg run`` computes), scored frame by frame with
:class:`~rtseg.train.video_metrics.VideoScore`: TC and flip rate, and mIoU where a frame has a label.

Labels: ``--order FILE`` names each frame's label file, one per line in frame order (``-`` or an
empty line: no label), inside ``--labels DIR``; the bundled CamVid clip's ``.frames.txt`` is such a
file. Label values the model has no class for (CamVid's void, 11) are ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from rtseg.errors import RtsegError
from rtseg.pipeline.app import segment
from rtseg.pipeline.context import Run
from rtseg.pipeline.packet import Packet
from rtseg.pipeline.runner import Sink
from rtseg.train.data import IGNORE
from rtseg.train.evaluate import eval_report
from rtseg.train.video_metrics import FLOW_PRESET, VideoScore

__all__ = ["clip_labels", "evaluate_video"]


def clip_labels(clip: str | Path, labels: Path | None, order: Path | None) -> list[Path | None] | None:
    """Each frame's label file (None where it has none), from ``order`` (default: the clip's own
    ``<clip>.frames.txt`` when ``labels`` is given); None without ``labels``. One-line errors for
    a missing folder or order file and for an order file naming no file that exists."""
    if labels is None:
        if order is not None:
            raise RtsegError("--order needs --labels DIR (the folder its names point into)")
        return None
    if not labels.is_dir():
        raise RtsegError(f"--labels {labels} is not a folder")
    order = order or Path(clip).with_suffix(".frames.txt")
    if not order.is_file():
        raise RtsegError(f"--order {order}: no such file (one label file name per frame, in frame order)")
    names = [line.strip() for line in order.read_text().splitlines()]
    paths = [labels / n if n and n != "-" else None for n in names]
    if not any(p is not None and p.is_file() for p in paths):
        raise RtsegError(f"none of the {len(names)} names in {order} is a file in {labels}")
    return paths


def _read_label(path: Path, num_classes: int) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise RtsegError(f"cannot read label {path} as a one-channel class-id image")
    return np.where(label < num_classes, label, IGNORE).astype(np.uint8)


class _ScoreSink(Sink):
    """The write stage: each frame's ids (inference size) and label into the score."""

    def __init__(self, score: VideoScore, labels: list[Path | None] | None, num_classes: int):
        self.score, self.labels, self.num_classes = score, labels, num_classes

    def write(self, packet: Packet) -> None:
        k = packet.source_index if packet.source_index is not None else packet.index
        path = self.labels[k] if self.labels is not None and k < len(self.labels) else None
        label = _read_label(path, self.num_classes) if path is not None and path.is_file() else None
        self.score.update(packet.frame, packet.ids, label)


def evaluate_video(run: Run, *, labels: list[Path | None] | None = None,
                   on_frame: Callable[[int, int], None] | None = None) -> dict:
    """Run the opened ``run`` (its engine, and its temporal filter as ``open_run`` resolved it)
    through the pipeline and return the eval JSON for a clip: :func:`rtseg.train.evaluate.eval_report`'s
    fields over the labelled frames (null without labels), plus ``tc``, ``flip_rate``, ``labelled``,
    ``temporal`` and ``flow`` (the metric's optical flow). The run's source is closed at the end."""
    source, engine, temporal = run.source, run.engine, run.temporal
    meta = engine.meta
    score = VideoScore(meta.num_classes, IGNORE)
    result = segment(run, _ScoreSink(score, labels, meta.num_classes), picture=False, on_frame=on_frame).result
    if result.interrupted:
        raise KeyboardInterrupt
    out = score.compute()
    report = eval_report(score.seg, meta.class_names, dataset="video", split=source.name, frames=out["frames"])
    if not out["labelled"]:
        report = {**report, "pixel_acc": None, "mean_dice": None,
                  "per_class_iou": {name: None for name in meta.class_names}}
    return {**report, "miou": out["miou"], "tc": out["tc"], "flip_rate": out["flip_rate"],
            "labelled": out["labelled"], "temporal": "on" if temporal is not None else "off",
            "flow": f"OpenCV DIS {FLOW_PRESET}",
            "tc_per_frame": [round(tc, 4) for tc, _ in score.tc.per_pair],  # frame k: TC of frames k and k+1
            "flip_rate_per_frame": [round(flip, 5) for _, flip in score.tc.per_pair]}
