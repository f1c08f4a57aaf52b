"""Flicker with and without the temporal filter (rtseg/pipeline/temporal.py) on real clips.

For every clip: the network (PyTorch, CPU) runs on each frame at the weights' input size; the
frame's ids "off" are the network's own (argmax of its logits at the input size), "on" are the
filter's, fed the class scores at the network's own output resolution (1/8). Both are scored with
rtseg.train.video_metrics (TC and flip rate, flow: DIS medium), and with mIoU where a clip's
``.frames.txt`` names its frames' label files (CamVid: valannot). The filter's cost per frame is
timed alone on one core (OpenCV threads = 1).

Which weights: the shipped ones were trained on CamVid train+val, and the labelled clip is cut
from val, so its mIoU is not held out; pass ``--weights`` a train-only checkpoint for that. The
weights shipped before them (commit 02d5fbd, "camvid_d") are one: trained on CamVid train alone
(val chose their checkpoint and calibration, but no val frame was trained on).

``--pan`` adds a clip nobody tuned the filter on: 4:3 windows sliding across the bundled
1024x2048 street frame (a real Cityscapes-style picture, a city CamVid never saw), a camera pan
of about 1% of the width a frame. Its motion is synthetic (one rigid shift, no parallax, nothing
moving on its own): easier for the flow than real footage, so say so beside its figures.

``--as-foreign`` runs the same network as a model from another tool would come: its logits
exported with a plain ``torch.onnx.export`` (float RGB, ImageNet mean/std, logits at the input
size, no rtseg metadata), wrapped by rtseg (``--classes camvid``) and run on ONNX Runtime. The
filter then gets the wrap's ``scores`` output (those logits resized to 1/8), not the network's
own low-resolution head: what ``--temporal on`` does for a foreign model.

    git show 02d5fbd:models/fastscnn_camvid.pt > runs/camvid_d_trainonly.pt
    python benchmarks/temporal.py --weights runs/camvid_d_trainonly.pt --pan \
        --weights-note "camvid_d (02d5fbd): CamVid train only" --json benchmarks/results/temporal.json
    python benchmarks/temporal.py --weights runs/camvid_d_trainonly.pt --pan --as-foreign \
        --weights-note "camvid_d (02d5fbd): CamVid train only" --json benchmarks/results/temporal_foreign.json
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_json import write_json  # noqa: E402

from rtseg.bundled import DEFAULT_WEIGHTS, DEMO_CLIP  # noqa: E402
from rtseg.formats.checkpoint import build_from_checkpoint  # noqa: E402
from rtseg.nets.deploy import normalisation_conv  # noqa: E402
from rtseg.pipeline.temporal import TemporalConfig, TemporalFilter  # noqa: E402
from rtseg.train.video_metrics import FLOW_PRESET, video_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
STRIDE = 8  # the networks' output stride: scores come at 1/8 of the input size


def cpu_info() -> dict[str, object]:
    """This machine as every benchmark JSON records it: CPU model and flags, cores, GPUs, versions."""
    from rtseg.machine import describe

    return describe()


class ScoresNet:
    """The network with its scores at its own output resolution: the input of the last upsample
    (a hook on its classifier head where the net names one), else the logits area-pooled by 8."""

    def __init__(self, net: torch.nn.Module, mean, std):
        self.net = net.eval()
        weight, bias = normalisation_conv(mean, std)
        self.weight, self.bias = weight, bias
        self._low: torch.Tensor | None = None
        head = getattr(net, "classifier", None)
        head = getattr(net, "head", None) if head is None else head
        if head is not None:
            head.register_forward_hook(lambda _m, _i, out: setattr(self, "_low", out))

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BGR uint8 (H, W, 3) -> (ids uint8 (H, W), scores float32 (C, H/8, W/8))."""
        x = torch.from_numpy(frame)[None].permute(0, 3, 1, 2).float()
        logits = self.net(F.conv2d(x, self.weight, self.bias))
        low = self._low
        if low is None or low.shape[-1] >= logits.shape[-1]:
            low = F.avg_pool2d(logits, STRIDE, ceil_mode=True)
        self._low = None
        return logits[0].argmax(0).to(torch.uint8).numpy(), low[0].float().numpy()


class EngineScores:
    """An rtseg engine's ids and its ``scores`` output (fp16, 1/8 of the input), as ScoresNet gives them."""

    def __init__(self, engine):
        self.engine = engine

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self.engine.infer_scores(frame[None])
        return ids[0], scores[0].astype(np.float32)


def foreign_engine(net: torch.nn.Module, meta, folder: Path, threads: int):
    """``net`` exported as another tool would (float RGB in, ImageNet mean/std, logits out, no rtseg
    metadata), then opened as rtseg opens any foreign .onnx: wrapped, on ONNX Runtime."""
    import warnings

    from rtseg.engines import open_engine

    from rtseg.meta import IMAGENET_MEAN, IMAGENET_STD

    if (tuple(meta.mean), tuple(meta.std)) != (IMAGENET_MEAN, IMAGENET_STD):
        raise SystemExit(f"--as-foreign expects ImageNet mean/std weights; these have {meta.mean}, {meta.std}")
    path = folder / f"{meta.model}_plain.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, *meta.input_size),), str(path), input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False)
    return open_engine(path, runtime="onnxruntime", threads=threads, classes="camvid", normalize="imagenet")


def read_clip(path: Path, size: tuple[int, int], max_frames: int | None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        if frame.shape[:2] != size:
            frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        frames.append(frame)
    cap.release()
    return frames


def clip_labels(clip: Path, labels_dir: Path | None, count: int, size: tuple[int, int], classes: int) -> list | None:
    """The label of each frame (None where there is none) from ``<clip>.frames.txt``, or None."""
    order = clip.with_suffix(".frames.txt")
    if labels_dir is None or not order.is_file() or not labels_dir.is_dir():
        return None
    out = []
    for name in order.read_text().split()[:count]:
        label = cv2.imread(str(labels_dir / name), cv2.IMREAD_UNCHANGED)
        if label is not None:
            if label.shape != size:
                label = cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
            label = np.where(label < classes, label, 255).astype(np.uint8)  # CamVid void (11) -> ignore
        out.append(label)
    return out + [None] * (count - len(out))


def run_clip(clip: Path, model: ScoresNet, size, classes: int, labels_dir, config: TemporalConfig,
             max_frames: int | None) -> dict:
    frames = read_clip(clip, size, max_frames)
    net_ms, outputs = [], []
    for frame in frames:
        t0 = time.perf_counter()
        outputs.append(model(frame))
        net_ms.append((time.perf_counter() - t0) * 1e3)
    filt, filter_ms, filtered = TemporalFilter(config), [], []
    for frame, (_, scores) in zip(frames, outputs):
        t0 = time.perf_counter()
        filtered.append(filt(frame, scores, size=size))
        filter_ms.append((time.perf_counter() - t0) * 1e3)
    labels = clip_labels(clip, labels_dir, len(frames), size, classes) or [None] * len(frames)
    off = video_metrics(((f, o[0], l) for f, o, l in zip(frames, outputs, labels)), num_classes=classes)
    on = video_metrics(((f, i, l) for f, i, l in zip(frames, filtered, labels)), num_classes=classes)
    net = statistics.median(net_ms)
    cost = statistics.median(filter_ms[1:] or filter_ms)  # the first frame has no flow to compute
    return {"clip": str(clip.relative_to(REPO)) if clip.is_relative_to(REPO) else str(clip), "frames": len(frames), "size": list(size), "off": off, "on": on,
            "tc_gain": None if off["tc"] is None else round(on["tc"] - off["tc"], 4),
            "net_ms_median": round(net, 2), "filter_ms_median": round(cost, 3),
            "filter_ms_mean": round(statistics.fmean(filter_ms[1:] or filter_ms), 3),
            "fps_off": round(1e3 / net, 2), "fps_on": round(1e3 / (net + cost), 2), "filter_fps": round(1e3 / cost, 1)}


def pan_clip(path: Path, n: int = 100, fps: float = 15.0, size: tuple[int, int] = (360, 480)) -> Path:
    """Write ``n`` frames of a pan across the bundled street frame to ``path`` (mp4v): 4:3 windows
    as tall as the picture, sliding left to right, each resized to ``size`` (h, w)."""
    from rtseg.bundled import BENCH_FRAME

    image = cv2.imread(str(BENCH_FRAME), cv2.IMREAD_COLOR)
    H, W = image.shape[:2]
    win_w = min(W, H * size[1] // size[0])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    for x in np.linspace(0, W - win_w, n):
        x0 = int(round(x))
        writer.write(cv2.resize(image[:, x0:x0 + win_w], (size[1], size[0]), interpolation=cv2.INTER_AREA))
    writer.release()
    return path


def default_clips() -> list[Path]:
    """The bundled clip and every .mp4 of ../shared/data/video (same-named copies once)."""
    clips, names = [], set()
    for clip in [DEMO_CLIP, *sorted((SHARED / "video").glob("*.mp4"))]:
        if clip.is_file() and clip.name not in names:
            clips.append(clip)
            names.add(clip.name)
    return clips


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="an rtseg checkpoint (.pt)")
    ap.add_argument("--clips", type=Path, nargs="*", help="videos (default: the bundled clip and ../shared/data/video)")
    ap.add_argument("--labels", type=Path, default=SHARED / "camvid" / "valannot",
                    help="label folder the clips' .frames.txt names point into")
    ap.add_argument("--pan", action="store_true", help="add a pan across the bundled street frame (synthetic motion)")
    ap.add_argument("--weights-note", default=None, help="what the weights are, for the JSON")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--memory", type=float, default=TemporalConfig.memory)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the network")
    ap.add_argument("--as-foreign", action="store_true",
                    help="run the network as a foreign .onnx (plain export, wrapped by rtseg, ONNX Runtime)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)  # the filter's cost on one core
    net, meta = build_from_checkpoint(args.weights)
    config = TemporalConfig(memory=args.memory)
    size = tuple(meta.input_size)
    clips = list(args.clips or default_clips())
    with tempfile.TemporaryDirectory(prefix="rtseg-temporal-") as tmp:
        model = EngineScores(foreign_engine(net, meta, Path(tmp), args.threads)) if args.as_foreign \
            else ScoresNet(net, meta.mean, meta.std)
        if args.pan:
            clips.append(pan_clip(Path(tmp) / "pan_street_1024x2048.mp4"))
        rows = [run_clip(c, model, size, meta.num_classes, args.labels, config, args.max_frames) for c in clips]
    for row in rows:
        if Path(row["clip"]).name.startswith("pan_street"):
            row["clip"] = "pan over street_1024x2048.jpg (synthetic motion)"
    how = "as a foreign .onnx, wrapped, ONNX Runtime" if args.as_foreign else "PyTorch"
    print(f"weights {args.weights} ({meta.model}, {meta.num_classes} classes, {size[0]}x{size[1]}; {how})")
    print(f"{'clip':40} {'TC off':>7} {'TC on':>7} {'flip off':>8} {'flip on':>8} {'mIoU off':>8} {'mIoU on':>8} {'filter ms':>9}")
    for r in rows:
        miou = [("-" if r[k]["miou"] is None else f"{r[k]['miou']:.4f}") for k in ("off", "on")]
        print(f"{Path(r['clip']).name[:40]:40} {r['off']['tc']:7.4f} {r['on']['tc']:7.4f} {r['off']['flip_rate']:8.4f} "
              f"{r['on']['flip_rate']:8.4f} {miou[0]:>8} {miou[1]:>8} {r['filter_ms_median']:9.2f}")
    if args.json:
        weights_note = args.weights_note or (
            "shipped weights: trained on CamVid train+val, so the CamVid clip's mIoU is not held out"
            if args.weights.resolve() == DEFAULT_WEIGHTS.resolve() else "user-supplied checkpoint")
        write_json(args.json, {"weights": str(args.weights), "weights_note": weights_note, "model": meta.model,
                               "config": config.__dict__, "metric_flow": f"DIS {FLOW_PRESET}", "cpu": cpu_info(),
                               "torch_threads": args.threads,
                               "as_foreign": args.as_foreign, "runtime": "onnxruntime" if args.as_foreign else "pytorch",
                               "date": time.strftime("%Y-%m-%d"), "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
