"""Which precisions may ``--runtime auto`` keep? Evidence for the acceptance rule (issue #37).

For weights that never saw CamVid val (a train-only run), at one inference size, every candidate
(ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16 where the CPU computes it, and the int8 QDQ copy of
benchmarks/int8_quantize.py on both runtimes) is compared with the reference (PyTorch fp32) on
the 101 CamVid val frames and on the probe's own frames (windows of the bundled street frame, what
``auto`` measures on, with no labels):

- ``agree``: share of pixels whose id is the reference's (the old rule: >= 97%);
- ``agree_sure``: the same on the pixels where the reference is sure (top-1 minus top-2 probability
  >= 0.5): flips there are errors, flips elsewhere are coin tosses between two classes;
- ``miou_vs_ref``: mean IoU of the candidate's ids against the reference's, per class present;
- ``val_miou``: CamVid val mIoU against the labels (void ignored), the figure a user cares about.

``--degrade-bits 6,5`` adds candidates made worse on purpose (every convolution's weights rounded
to that many bits): losses of the size the rule must refuse.

    python benchmarks/precision_rule.py --weights runs/trainonly50/last.pt --size 360x480 \\
        --json benchmarks/results/precision_rule.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rtseg import machine  # noqa: E402
from rtseg.engines import open_engine  # noqa: E402
from rtseg.engines.probe import probe_frames  # noqa: E402
from rtseg.pipeline.temporal import softmax, top_margin  # noqa: E402

SURE = 0.5  # reference margin (top-1 minus top-2 probability) at which a pixel counts as sure


def _miou(a: np.ndarray, b: np.ndarray, n: int, ignore: int | None = None) -> float:
    keep = b != ignore if ignore is not None else np.ones(b.shape, bool)
    a, b = a[keep].astype(np.int64), b[keep].astype(np.int64)
    cm = np.bincount(n * b + np.clip(a, 0, n - 1), minlength=n * n).reshape(n, n)
    tp, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
    present = union > 0
    return float(np.mean(tp[present] / union[present]))


def _reference(engine, batches):
    ids, margins = [], []
    for b in batches:
        i, s = engine.infer_scores(b)
        probs = softmax(np.ascontiguousarray(s[0].transpose(1, 2, 0), np.float32))
        m = top_margin(probs)
        h, w = i.shape[1:]
        import cv2

        margins.append(cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST))
        ids.append(i[0])
    return ids, margins


def _compare(ids, ref_ids, margins, n) -> dict:
    agree = np.mean([np.mean(a == r) for a, r in zip(ids, ref_ids)])
    sure = np.concatenate([(a == r)[m >= SURE] for a, r, m in zip(ids, ref_ids, margins)])
    miou = np.mean([_miou(a, r, n) for a, r in zip(ids, ref_ids)])
    return {"agree": round(float(agree), 5), "agree_sure": round(float(sure.mean()), 5),
            "sure_share": round(float(np.mean([np.mean(m >= SURE) for m in margins])), 4),
            "miou_vs_ref": round(float(miou), 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "camvid")
    ap.add_argument("--size", default="360x480")
    ap.add_argument("--degrade-bits", type=lambda t: [int(v) for v in t.split(",") if v], default=[6, 5],
                    help="deliberately degraded candidates: convolution weights rounded to these many bits")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    from rtseg.export.onnx import export_onnx
    from rtseg.formats.checkpoint import build_from_checkpoint
    from rtseg.train.data import build_dataset
    from int8_quantize import quantize_onnx

    ds = build_dataset("camvid", args.data_root, "val")
    val = [ds.read(i) for i in range(len(ds))]
    ref = open_engine(args.weights, runtime="pytorch", size=(h, w), precision="fp32")
    n = ref.meta.num_classes
    with tempfile.TemporaryDirectory(prefix="rtseg-prec-") as tmp:
        model, meta = build_from_checkpoint(args.weights)
        fp32 = export_onnx(model, meta, Path(tmp) / "fp32.onnx", size=(h, w))
        int8 = quantize_onnx(fp32, Path(tmp) / "int8.onnx", args.data_root / "train", frames=16)
        cands = {"onnxruntime fp32": (fp32, "onnxruntime", "fp32"), "openvino fp32": (fp32, "openvino", "fp32")}
        if machine.native_bf16():
            cands["openvino bf16"] = (fp32, "openvino", "bf16")
        cands["onnxruntime int8"] = (int8, "onnxruntime", "auto")  # the file's own precision
        cands["openvino int8"] = (int8, "openvino", "fp32")  # its int8 kernels; the rest in fp32
        for bits in args.degrade_bits:
            cands[f"degraded {bits}-bit"] = (_degraded(fp32, Path(tmp) / f"w{bits}.onnx", bits), "onnxruntime", "fp32")
        sets = {"val": [img for img, _ in val], "probe": probe_frames((h, w), 8)}
        batches = {k: [ref.preprocess([f]) for f in frames] for k, frames in sets.items()}
        refs = {k: _reference(ref, b) for k, b in batches.items()}
        rows = {"pytorch fp32": {"val_miou": _val_miou(ref, val, n)}}
        for label, (path, runtime, precision) in cands.items():
            eng = open_engine(path, runtime=runtime, size=(h, w), precision=precision, threads=0)
            row = {}
            for k in sets:
                ids = [eng.infer(b)[0] for b in batches[k]]
                row[k] = _compare(ids, refs[k][0], refs[k][1], n)
            row["val_miou"] = _val_miou(eng, val, n)
            rows[label] = row
            print(label, json.dumps(row), flush=True)
    base = rows["pytorch fp32"]["val_miou"]
    print(f"\n{'candidate':<18} {'val mIoU':>8} {'vs fp32':>8} | {'val: agree':>10} {'sure':>7} {'mIoU/ref':>8} | "
          f"{'probe: agree':>12} {'sure':>7} {'mIoU/ref':>8}")
    for label, row in rows.items():
        v, p = row.get("val", {}), row.get("probe", {})
        print(f"{label:<18} {row['val_miou']:8.4f} {100 * (row['val_miou'] - base):+7.2f}p | "
              f"{v.get('agree', 1):10.4f} {v.get('agree_sure', 1):7.4f} {v.get('miou_vs_ref', 1):8.4f} | "
              f"{p.get('agree', 1):12.4f} {p.get('agree_sure', 1):7.4f} {p.get('miou_vs_ref', 1):8.4f}")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": machine.describe(),
                                         "weights": str(args.weights), "size": [h, w], "sure_margin": SURE,
                                         "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.json}")


def _degraded(src: Path, dst: Path, bits: int) -> Path:
    """A deliberately worse copy: every convolution's weights rounded to ``bits`` bits, one scale a
    tensor (a careless quantisation): the kind of loss the rule must refuse."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.ndim == 4 and w.dtype == np.float32:
            scale = np.abs(w).max() / (2 ** (bits - 1) - 1) or 1.0
            init.CopyFrom(numpy_helper.from_array((np.round(w / scale) * scale).astype(np.float32), init.name))
    onnx.save(model, str(dst))
    return dst


def _val_miou(engine, val, n) -> float:
    from rtseg.train.metrics import ConfusionMatrix

    cm = ConfusionMatrix(n, ignore_index=255)
    for img, label in val:
        cm.update(engine.predict(img), label)
    return round(cm.compute()["miou"], 5)


if __name__ == "__main__":
    main()
