"""Pictures where people would rather look than read, drawn with OpenCV (nothing more to install):
the per-stage timeline of a traced run (``rtseg bench --plot``), and an evaluation's normalised
confusion matrix and per-class IoU bars (``rtseg eval --plots``)."""
from __future__ import annotations

import colorsys
import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from rtseg.errors import RtsegError

__all__ = ["timeline", "confusion_png", "iou_bars_png", "curves_png", "write_png", "check_png_path"]

LANE, LABEL, PAD = 46, 190, 12  # px: lane height, label column, margin


def _colour(frame: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((frame * 0.137) % 1.0, 0.55, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def timeline(events: list[dict], *, start_ms: float | None, span_ms: float, width: int = 1600) -> np.ndarray:
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    order = {(e["pid"], e["tid"]): e["args"]["sort_index"] for e in events if e.get("name") == "thread_sort_index"}
    slices = [e for e in events if e["ph"] == "X"]
    pid = slices[len(slices) // 2]["pid"]  # the run in the middle of the file
    slices = [e for e in slices if e["pid"] == pid]
    lanes = sorted({(e["pid"], e["tid"]) for e in slices}, key=lambda k: (order.get(k, 5), names.get(k, "")))
    t0 = (start_ms * 1e3) if start_ms is not None else np.median([e["ts"] for e in slices]) - span_ms * 500
    scale = (width - LABEL - 2 * PAD) / (span_ms * 1e3)  # px per µs
    img = np.full((2 * PAD + LANE * len(lanes) + 30, width, 3), 255, np.uint8)
    for i, key in enumerate(lanes):
        y = PAD + i * LANE
        cv2.putText(img, names.get(key, str(key[1])).removeprefix("rtseg-"), (PAD, y + LANE // 2 + 5),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.55, (40, 40, 40), 1, cv2.LINE_AA)
        cv2.line(img, (LABEL, y + LANE - 2), (width - PAD, y + LANE - 2), (225, 225, 225), 1)
        for e in slices:
            if (e["pid"], e["tid"]) != key or e["ts"] + e["dur"] < t0 or e["ts"] > t0 + span_ms * 1e3:
                continue
            x0 = LABEL + int(max(0.0, e["ts"] - t0) * scale)
            x1 = LABEL + int(min(span_ms * 1e3, e["ts"] + e["dur"] - t0) * scale)
            if e["name"].startswith("wait"):
                cv2.rectangle(img, (x0, y + LANE - 14), (max(x0, x1), y + LANE - 8), (190, 190, 190), -1)
                continue
            cv2.rectangle(img, (x0, y + 4), (max(x0 + 1, x1), y + LANE - 18), _colour(e["args"]["frame"]), -1)
            cv2.rectangle(img, (x0, y + 4), (max(x0 + 1, x1), y + LANE - 18), (90, 90, 90), 1)
            if x1 - x0 > 26:
                cv2.putText(img, str(e["args"]["frame"]), (x0 + 3, y + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                            (30, 30, 30), 1, cv2.LINE_AA)
    y = img.shape[0] - 12
    step = 50 if span_ms > 200 else 10
    for ms in range(0, int(span_ms) + 1, step):
        x = LABEL + int(ms * 1e3 * scale)
        cv2.line(img, (x, y - 12), (x, y - 6), (80, 80, 80), 1)
        cv2.putText(img, f"{ms} ms", (x - 12, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    return img


def check_png_path(path: str | Path, flag: str) -> Path:
    """A one-line error now, before the work, for a picture that could not be written later."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise RtsegError(f"{flag} {path}: give a .png name")
    if not path.parent.is_dir():
        raise RtsegError(f"{flag} {path}: folder {path.parent} does not exist")
    return path


def write_png(path: str | Path, image: np.ndarray, flag: str) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise RtsegError(f"{flag} {path}: folder {path.parent} does not exist")
    if not cv2.imwrite(str(path), image):
        raise RtsegError(f"{flag} {path}: cannot write it (use a .png name)")
    return path


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, colour=(40, 40, 40)) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def confusion_png(matrix: np.ndarray, names: Sequence[str], title: str = "") -> np.ndarray:
    """The confusion matrix (rows: ground truth, columns: prediction), each row normalised to 1, as
    a heat map with the share in each cell; the diagonal is the recall of each class."""
    m = np.asarray(matrix, np.float64)
    rows = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n, cell, label = len(names), 44, 130
    size = label + n * cell + 20
    img = np.full((size + 40, size, 3), 255, np.uint8)
    heat = cv2.applyColorMap(np.clip(rows * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    for i in range(n):
        _text(img, names[i][:16], (6, label + i * cell + cell // 2 + 5))
        for j in range(n):
            y0, x0 = label + i * cell, label + j * cell
            colour = tuple(int(v) for v in heat[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cell - 2, y0 + cell - 2), colour, -1)
            ink = (255, 255, 255) if rows[i, j] < 0.6 else (0, 0, 0)
            _text(img, f"{rows[i, j]:.2f}"[1:] if rows[i, j] < 1 else "1.0", (x0 + 6, y0 + cell // 2 + 4), 0.42, ink)
    for j in range(n):  # column names, written upwards
        label_img = np.full((cell, label - 8, 3), 255, np.uint8)
        _text(label_img, names[j][:14], (4, cell // 2 + 5))
        rotated = cv2.rotate(label_img, cv2.ROTATE_90_COUNTERCLOCKWISE)
        img[4:4 + rotated.shape[0], label + j * cell:label + j * cell + rotated.shape[1]] = rotated
    _text(img, title or "confusion (rows: truth, columns: prediction; each row sums to 1)", (6, size + 24), 0.5)
    return img


def iou_bars_png(per_class: dict[str, float | None], palette: Sequence[Sequence[int]], title: str = "") -> np.ndarray:
    """Per-class IoU as horizontal bars in each class's colour, with the value and the mean."""
    names = list(per_class)
    row, label, width = 28, 140, 520
    img = np.full((row * len(names) + 70, label + width + 80, 3), 255, np.uint8)
    values = [v for v in per_class.values() if v is not None and not math.isnan(v)]
    for i, name in enumerate(names):
        v = per_class[name]
        y = 10 + i * row
        _text(img, name[:18], (6, y + row // 2 + 4))
        r, g, b = (palette[i] if i < len(palette) else (90, 90, 90))
        if v is not None and not math.isnan(v):
            cv2.rectangle(img, (label, y + 4), (label + int(v * width), y + row - 4), (int(b), int(g), int(r)), -1)
            cv2.rectangle(img, (label, y + 4), (label + int(v * width), y + row - 4), (60, 60, 60), 1)
            _text(img, f"{100 * v:.1f}", (label + int(v * width) + 6, y + row // 2 + 4))
        else:
            _text(img, "-", (label + 4, y + row // 2 + 4))
    mean = float(np.mean(values)) if values else float("nan")
    x = label + int((0 if math.isnan(mean) else mean) * width)
    cv2.line(img, (x, 6), (x, 10 + len(names) * row), (0, 0, 200), 1)
    _text(img, (title + "  " if title else "") + f"IoU per class; red line: mean {100 * mean:.1f}", (6, img.shape[0] - 20), 0.5)
    return img


def curves_png(series: dict[str, Sequence[float]], title: str = "", *, width: int = 900, height: int = 320) -> np.ndarray:
    """Lines over the frame index, each series on the same 0..1 scale (TC and flip rate per frame)."""
    colours = [(180, 90, 20), (40, 40, 200), (30, 150, 30), (150, 40, 150)]
    left, top, bottom = 50, 16, 48
    img = np.full((height, width, 3), 255, np.uint8)
    h, w = height - top - bottom, width - left - 16
    cv2.rectangle(img, (left, top), (left + w, top + h), (200, 200, 200), 1)
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + int((1 - v) * h)
        cv2.line(img, (left - 4, y), (left + w, y), (235, 235, 235), 1)
        _text(img, f"{v:.2f}", (6, y + 4), 0.4)
    n = max((len(v) for v in series.values()), default=0)
    for k, (name, values) in enumerate(series.items()):
        if len(values) < 1:
            continue
        xs = left + (np.arange(len(values)) * (w / max(1, n - 1))).astype(int)
        ys = top + ((1 - np.clip(np.asarray(values, float), 0, 1)) * h).astype(int)
        cv2.polylines(img, [np.stack([xs, ys], axis=1).astype(np.int32)], False, colours[k % len(colours)], 2,
                      cv2.LINE_AA)
        _text(img, f"{name} (mean {np.mean(values):.3f})", (left + 10 + 260 * k, height - 26), 0.45,
              colours[k % len(colours)])
    _text(img, (title + ": " if title else "") + f"per frame pair, {n} pairs", (left, height - 8), 0.45)
    return img
