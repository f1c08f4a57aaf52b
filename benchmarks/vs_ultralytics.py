"""The same ultralytics model, exported by ultralytics, run by ultralytics and by rtseg (#39).

ultralytics' ``yolo26n-sem`` (built from its yaml, then taught the clip by rtseg's shipped
Fast-SCNN for a few minutes: its class maps have regions and edges, as a trained model's have.
Speed hardly depends on the weights, but rtseg makes the ids on the host from the 1/8 scores where
a map has few edges (rtseg.engines.host_ids), so a random model's one-class map would flatter
rtseg, and a random model's speckle would make it fall back to the graph's own tail)
exported by ultralytics at 384x640 to ONNX and to OpenVINO, its fastest CPU export (its own
docs advise OpenVINO on Intel CPUs). The clip: the demo clip enlarged to 960x540, played 2.2
times (221 frames), H.264. Rounds take turns, so a change in the machine's load hits both alike:

* **ultralytics**: ``YOLO(openvino_dir, task="semantic").predict(clip, stream=True, save=True,
  imgsz=(384, 640))``, a fresh process each time: what ``yolo predict`` does. Its OpenVINO
  backend compiles for latency at OpenVINO's default precision (bf16 on CPUs with AMX, fp32
  elsewhere) and saves the annotated video.
* **rtseg**: ``rtseg run clip --engine yolo26n-sem.onnx`` with its defaults (it reads the file's
  metadata; ``--runtime auto`` measured once on the first run and cached: that first run is not
  timed, a user pays it once), writing its overlay video.
* **rtseg, same precision**: ``--runtime openvino --precision P`` with P ultralytics' effective
  precision, for the steady-state comparison.

Figures, medians over the rounds:

* **wall fps**: frames / (process start to exit), what a user waits for;
* **steady fps**: frames after the 10th over the time from the 10th to the last (ultralytics:
  timed around its stream's results; rtseg: its ``--json``'s ``steady_fps``, which counts the same
  way);
* **first frame s**: process start to the first result (ultralytics: timed from just before the
  process is started) or the first frame written (rtseg's ``first_frame_s``).

Needs a Python with ultralytics (and openvino) for the ultralytics side: ``--tools-python`` or
``RTSEG_TOOLS_PYTHON`` (.ci/run makes ``.venv-tools``). Writes benchmarks/results/vs_ultralytics.json.

    python benchmarks/vs_ultralytics.py --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_json import write_json  # noqa: E402

IMGSZ = (384, 640)
TRAIN_STEPS = 300  # the benchmark's yolo26n-sem learns the clip from rtseg's Fast-SCNN: 4-5 minutes on 2 cores
FRAMES = 221

# Run first in the tools' Python (tests/export/tool_models.py says why): PyPI's torchvision is built against
# CUDA torch, and beside the CPU torch its import stops at two operators it cannot find; declared here.
_SHIM = r"""
import sys, time, json, torch
lib = None
try:
    import torchvision  # noqa
except RuntimeError:  # PyPI's CUDA-built torchvision beside the CPU torch: declare the 2 ops it registers fakes for
    for m in [m for m in sys.modules if m.startswith("torchvision")]:
        del sys.modules[m]
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(op + "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
"""

_MAKE = _SHIM + r"""
from pathlib import Path
import numpy as np
from ultralytics import YOLO
out, teacher = Path(sys.argv[1]), np.load(sys.argv[4])
imgsz, steps = (int(sys.argv[2]), int(sys.argv[3])), int(sys.argv[5])
torch.manual_seed(0)
torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
m = YOLO("yolo26n-sem.yaml", task="semantic")
net = m.model
x = torch.from_numpy(teacher["images"]).permute(0, 3, 1, 2)  # letterboxed RGB uint8 (N, 3, h, w)
y = torch.from_numpy(teacher["labels"]).long()  # the teacher's ids at h x w, 255 on the padding
opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
net.train()
for step in range(steps):
    pick = torch.randint(len(x), (4,))
    xb, yb = x[pick].float() / 255, y[pick]
    if step % 2:
        xb, yb = xb.flip(-1), yb.flip(-1)
    logits = net(xb)[0]  # (4, C, h/8, w/8)
    logits = torch.nn.functional.interpolate(logits, size=imgsz, mode="bilinear", align_corners=False)
    loss = torch.nn.functional.cross_entropy(logits, yb, ignore_index=255)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
print("RESULT " + json.dumps({"steps": steps, "last_loss": float(loss)}))
net.eval()
for fmt in ("onnx", "openvino"):
    p = Path(m.export(format=fmt, imgsz=imgsz, device="cpu"))
    p.replace(out / p.name)
"""

_PREDICT = _SHIM + r"""
from ultralytics import YOLO
model_dir, clip, h, w, project = sys.argv[1:6]
m = YOLO(model_dir, task="semantic")
times = []
for r in m.predict(clip, stream=True, save=True, imgsz=(int(h), int(w)), device="cpu", verbose=False,
                   project=project, name="run", exist_ok=True):
    times.append(time.perf_counter())
    first_at = first_at if len(times) > 1 else time.time()
print("RESULT " + json.dumps({"frames": len(times), "first_at": first_at,
                               "steady_fps": (len(times) - 10) / (times[-1] - times[9])}))
"""


def _clip(path: Path) -> Path:
    """The demo clip enlarged to 960x540, looped to FRAMES frames, H.264 (PyAV)."""
    import av
    import cv2

    from rtseg.bundled import DEMO_CLIP

    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(f, (960, 540), interpolation=cv2.INTER_LINEAR))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 960, 540, "yuv420p"
        for i in range(FRAMES):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frames[i % len(frames)], format="bgr24")))
        out.mux(stream.encode())
    return path


def _teacher(clip: Path, out: Path) -> Path:
    """Every 4th frame of ``clip`` letterboxed to IMGSZ (RGB) with rtseg's shipped Fast-SCNN's ids over
    them (CamVid's 11 classes; 255 on the padding), for the benchmark's model to learn from."""
    import cv2
    import numpy as np

    from rtseg.engines import open_engine
    from rtseg.engines.base import LETTERBOX_GREY, letterbox_box

    engine = open_engine(None, runtime="openvino", precision="fp32", note=lambda _: None)
    cap = cv2.VideoCapture(str(clip))
    images, labels, i = [], [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 4 == 0 and i < 100:  # the clip loops the demo after 100 frames
            top, left, nh, nw = letterbox_box(frame.shape[:2], IMGSZ)
            image = np.full((*IMGSZ, 3), LETTERBOX_GREY, np.uint8)
            label = np.full(IMGSZ, 255, np.uint8)
            image[top:top + nh, left:left + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)[..., ::-1]
            label[top:top + nh, left:left + nw] = cv2.resize(engine.predict(frame), (nw, nh),
                                                             interpolation=cv2.INTER_NEAREST)
            images.append(image)
            labels.append(label)
        i += 1
    np.savez_compressed(out, images=np.stack(images), labels=np.stack(labels))
    return out


def _timed(cmd: list[str], **kw) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, cmd))}\n{done.stderr[-2000:]}")
    return wall, done.stdout


def _ultralytics(tools: str, model_dir: Path, clip: Path, work: Path) -> dict:
    started = time.time()  # the first result is timed from here: the process's start, as rtseg's first_frame_s
    wall, out = _timed([tools, "-c", _PREDICT, str(model_dir), str(clip), str(IMGSZ[0]), str(IMGSZ[1]), str(work)],
                       env={**os.environ, "YOLO_OFFLINE": "1"})
    got = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    return {"wall_fps": got["frames"] / wall, "steady_fps": got["steady_fps"], "first_frame_s": got["first_at"] - started,
            "frames": got["frames"], "wall_s": wall}


def _rtseg(model: Path, clip: Path, work: Path, *extra: str) -> dict:
    doc = work / "rtseg.json"
    wall, _ = _timed([sys.executable, "-m", "rtseg.cli", "run", str(clip), "--engine", str(model), "-o",
                      str(work / "rtseg.mp4"), "--json", str(doc), "-q", *extra])
    got = json.loads(doc.read_text())
    return {"wall_fps": got["frames"] / wall, "steady_fps": got["steady_fps"], "first_frame_s": got["first_frame_s"],
            "frames": got["frames"], "wall_s": wall, "runtime": got["runtime"], "precision": got["precision"]}


def _ov_default_precision() -> str:
    import openvino as ov

    hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return {ov.Type.f32: "fp32", ov.Type.bf16: "bf16", ov.Type.f16: "fp16"}[hint]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tools-python", default=os.environ.get("RTSEG_TOOLS_PYTHON"))
    ap.add_argument("--work", type=Path, default=None, help="keep the clip and the exports here (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "vs_ultralytics.json")
    args = ap.parse_args()
    if not args.tools_python or not Path(args.tools_python).is_file():
        raise SystemExit("vs_ultralytics: needs a Python with ultralytics and openvino: --tools-python or "
                         "RTSEG_TOOLS_PYTHON (see .ci/run)")
    work = args.work or Path(tempfile.mkdtemp(prefix="vs_ultralytics-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RTSEG_CACHE", str(work / "cache"))
    clip = work / "clip_960x540.mp4"
    if not clip.is_file():
        _clip(clip)
    onnx_file, ov_dir = work / "yolo26n-sem.onnx", work / "yolo26n-sem_openvino_model"
    if not onnx_file.is_file() or not ov_dir.is_dir() or not (work / "teacher.npz").is_file():  # none, or untaught
        onnx_file.unlink(missing_ok=True)  # an untaught model's exports: made again below
        shutil.rmtree(ov_dir, ignore_errors=True)
        teacher = _teacher(clip, work / "teacher.npz")
        print(f"training yolo26n-sem on {teacher.name} for {TRAIN_STEPS} steps (once; kept in {work})")
        _timed([args.tools_python, "-c", _MAKE, str(work), str(IMGSZ[0]), str(IMGSZ[1]), str(teacher),
                str(TRAIN_STEPS)], cwd=work,
               env={**os.environ, "YOLO_OFFLINE": "1"})
    precision = _ov_default_precision()
    _rtseg(onnx_file, clip, work)  # the first run measures the runtimes once (cached): a user pays it once
    runs: dict[str, list[dict]] = {"ultralytics": [], "rtseg": [], "rtseg_same_precision": []}
    for r in range(args.rounds):
        runs["ultralytics"].append(_ultralytics(args.tools_python, ov_dir, clip, work))
        runs["rtseg"].append(_rtseg(onnx_file, clip, work))
        runs["rtseg_same_precision"].append(_rtseg(onnx_file, clip, work, "--runtime", "openvino",
                                                   "--precision", precision))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]['wall_fps']:.1f} fps" for k, v in runs.items()))

    med = {k: {f: statistics.median(x[f] for x in v) for f in ("wall_fps", "steady_fps", "first_frame_s")}
           for k, v in runs.items()}
    u = med["ultralytics"]
    ratios = {"wall": med["rtseg"]["wall_fps"] / u["wall_fps"],
              "steady_same_precision": med["rtseg_same_precision"]["steady_fps"] / u["steady_fps"],
              "steady_defaults": med["rtseg"]["steady_fps"] / u["steady_fps"],
              "first_frame": u["first_frame_s"] / med["rtseg"]["first_frame_s"]}
    print(f"\n{'':24}{'wall fps':>10}{'steady fps':>12}{'first frame s':>15}")
    for k, v in med.items():
        print(f"{k:24}{v['wall_fps']:10.1f}{v['steady_fps']:12.1f}{v['first_frame_s']:15.2f}")
    print(f"\nrtseg / ultralytics: wall {ratios['wall']:.2f}x (target >= 2), steady at {precision} "
          f"{ratios['steady_same_precision']:.2f}x (target >= 2), steady with rtseg's defaults "
          f"{ratios['steady_defaults']:.2f}x, first frame {ratios['first_frame']:.2f}x sooner")
    print(f"rtseg's defaults chose {runs['rtseg'][-1]['runtime']} {runs['rtseg'][-1]['precision']}")
    write_json(args.json, {"date": time.strftime("%Y-%m-%d"), "clip": f"demo clip at 960x540, {FRAMES} frames",
                           "imgsz": list(IMGSZ), "ultralytics_precision": precision,
                           "model": f"yolo26n-sem from ultralytics' yaml, taught the clip by rtseg's Fast-SCNN "
                                    f"({TRAIN_STEPS} steps)", "rounds": args.rounds,
                           "medians": med, "ratios": ratios, "runs": runs,
                           "command": "python benchmarks/vs_ultralytics.py --rounds " + str(args.rounds)})


if __name__ == "__main__":
    main()
