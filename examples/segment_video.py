"""Segment a video from Python and write the overlay: the README's example, runnable.

    python examples/segment_video.py [VIDEO] [OUTPUT]     (defaults: the bundled demo clip, segmented.mp4)
"""
import sys

import rtseg

source = sys.argv[1] if len(sys.argv) > 1 else None  # None: the bundled demo clip
with rtseg.VideoWriter(sys.argv[2] if len(sys.argv) > 2 else "segmented.mp4") as out:
    for r in rtseg.stream(source):  # read, transform and infer run pipelined in threads
        out.write(r)  # the overlay with its legend, H.264, as `rtseg run` writes it
        road = (r.ids == r.classes.index("Road")).mean()  # r.ids: class ids at the frame's size
        print(f"frame {r.index}: road {100 * road:.0f}% of the picture, infer {r.timings['infer']:.1f} ms")
