"""Draw a window of an ``rtseg run --trace`` file as a PNG (for the README): a lane per stage
thread, a box per frame per stage coloured by frame (the same frame has the same colour in every
lane, so the overlap reads at a glance), queue waits as thin grey bars.

    rtseg run --trace trace.json -o /tmp/o.mp4
    python benchmarks/trace_png.py trace.json docs/images/trace_cpu.png --ms 400
"""
from __future__ import annotations

import argparse
import colorsys
import json
from pathlib import Path

import cv2
import numpy as np

LANE, LABEL, PAD = 46, 190, 12  # px: lane height, label column, margin


def _colour(frame: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((frame * 0.137) % 1.0, 0.55, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def render(events: list[dict], *, start_ms: float | None, span_ms: float, width: int = 1600) -> np.ndarray:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--start-ms", type=float, default=None, help="window start (default: centred on the run)")
    ap.add_argument("--ms", type=float, default=400.0, help="window length")
    args = ap.parse_args()
    events = json.loads(args.trace.read_text())["traceEvents"]
    args.png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.png), render(events, start_ms=args.start_ms, span_ms=args.ms))
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
