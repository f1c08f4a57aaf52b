"""A compact copy of CamVid to send to a machine with a 64 MiB limit on what it is sent.

    python benchmarks/pack_camvid.py --src ../shared/data/camvid --out .gpu/camvid

Same SegNet layout (``train/``, ``trainannot/``, ``val/``, ``valannot/``; ``test`` too when
the source has it), images as JPEG (quality 95, 4:4:4 chroma) and labels as PNG (lossless:
labels must not change), with the same stems: the CamVid loader matches them by stem.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

SPLITS = ("train", "val", "test")


def pack(src: Path, out: Path, quality: int = 95) -> dict:
    """Write the compact copy; returns {split: frames} and the bytes written."""
    counts, total = {}, 0
    for split in SPLITS:
        img_dir, lab_dir = src / split, src / f"{split}annot"
        if not img_dir.is_dir() or not lab_dir.is_dir():
            continue
        (out / split).mkdir(parents=True, exist_ok=True)
        (out / f"{split}annot").mkdir(parents=True, exist_ok=True)
        n = 0
        for img_path in sorted(img_dir.glob("*.png")):
            label_path = lab_dir / img_path.name
            img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
            label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
            if img is None or label is None:
                raise SystemExit(f"error: cannot read {img_path} or its label {label_path}")
            ok_i, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                                   cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
            ok_l, png = cv2.imencode(".png", label, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if not (ok_i and ok_l):
                raise SystemExit(f"error: cannot encode {img_path}")
            (out / split / f"{img_path.stem}.jpg").write_bytes(jpg.tobytes())
            (out / f"{split}annot" / img_path.name).write_bytes(png.tobytes())
            total += len(jpg) + len(png)
            n += 1
        counts[split] = n
    if not counts:
        raise SystemExit(f"error: no CamVid splits (train/ + trainannot/, ...) under {src}")
    (out / "PACKED.json").write_text(json.dumps({"source": str(src), "jpeg_quality": quality, "frames": counts}) + "\n")
    return {"frames": counts, "bytes": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=Path("../shared/data/camvid"), help="CamVid in the SegNet layout")
    ap.add_argument("--out", type=Path, default=Path(".gpu/camvid"), help="where the compact copy goes (an ignored folder)")
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality of the images")
    args = ap.parse_args(argv)
    if not args.src.is_dir():
        print(f"error: {args.src} not found", file=sys.stderr)
        return 2
    result = pack(args.src, args.out, args.quality)
    print(f"packed {result['frames']} into {args.out}: {result['bytes'] / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
