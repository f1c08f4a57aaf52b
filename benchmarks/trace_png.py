"""Draw a window of an ``rtseg run --trace`` file as a PNG (for the README): a lane per stage
thread, a box per frame per stage coloured by frame (the same frame has the same colour in every
lane, so the overlap reads at a glance), queue waits as thin grey bars.

    rtseg run --trace trace.json -o /tmp/o.mp4
    python benchmarks/trace_png.py trace.json docs/images/trace_cpu.png --ms 400
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2

from rtseg.plots import timeline as render  # noqa: E402  (the same picture as rtseg bench --plot)


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
