"""The same ultralytics model, exported by ultralytics, run by ultralytics and by rtseg (#39).

ultralytics' ``yolo26n-sem`` (built from its yaml; random weights: speed does not depend on
them) exported by ultralytics at 384x640 to ONNX and to OpenVINO, its fastest CPU export (its own
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_json import write_json  # noqa: E402

IMGSZ = (384, 640)
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
from ultralytics import YOLO
out = Path(sys.argv[1]); imgsz = (int(sys.argv[2]), int(sys.argv[3]))
torch.manual_seed(0)
m = YOLO("yolo26n-sem.yaml", task="semantic")
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
    if not onnx_file.is_file() or not ov_dir.is_dir():
        _timed([args.tools_python, "-c", _MAKE, str(work), str(IMGSZ[0]), str(IMGSZ[1])], cwd=work,
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
                           "imgsz": list(IMGSZ), "ultralytics_precision": precision, "rounds": args.rounds,
                           "medians": med, "ratios": ratios, "runs": runs,
                           "command": "python benchmarks/vs_ultralytics.py --rounds " + str(args.rounds)})


if __name__ == "__main__":
    main()
