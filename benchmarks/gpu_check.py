"""Everything rtseg can check on a CUDA machine, offline, in one script: the GPU tests, the
pipeline benchmark at 512x1024 and 1024x2048, and a CamVid training run. docs/gpu.md says how
to prepare and run it.

    python benchmarks/gpu_check.py --out DIR --part bench --wheels .whl        # ~3 min
    python benchmarks/gpu_check.py --out DIR --part train --data .gpu/camvid   # ~8 min
    python benchmarks/gpu_check.py --out DIR --cpu --data DIR                  # CI: the same steps, tiny

Writes ``DIR/gpu_check_<part>.json`` (the summary: GPU, versions, test counts, bench figures,
training speed and results) and at most 7 more files (bench JSONs, logs, checkpoints).
The train part runs two trainings side by side from scratch with one recipe (RECIPE below):
on ``train`` (scored on ``val``: the recipe's check) and on ``train+val`` (the weights to ship,
CamVid's standard protocol). Its epochs are RECIPE's 1000, or as many as the measured speed
fits into ``--train-budget`` seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The training recipe (issue: shipped weights that hold up on unseen video), from the literature:
# the Fast-SCNN paper's optimiser (SGD, momentum 0.9, poly decay from 0.045, weight decay 4e-5 off
# depthwise, auxiliary losses 0.4, random scale 0.5-2, flip, colour noise and brightness),
# CamVid's 360x480 frames as crops with batch 16 and 1000 epochs (DABNet's CamVid schedule),
# class-weighted cross-entropy with ESPNet's/CGNet's weights 1/ln(1.10 + p).
RECIPE = ["--batch-size", "16", "--crop", "360x480", "--scale", "0.5,2.0", "--jitter", "0.3",
          "--optimizer", "sgd", "--lr", "0.045", "--weight-decay", "4e-5", "--warmup-epochs", "1",
          "--loss", "ce", "--class-weights", "espnet", "--aux-weight", "0.4", "--val-size", "360x480", "--seed", "0"]
RECIPE_EPOCHS = 1000
# --cpu: the same steps at sizes a 2-core CI machine runs in seconds (8 frames, data held on the
# CPU as the GPU holds it, so that path is the one rehearsed).
TINY = {"bench_sizes": ["64x128"], "bench_frames": 6, "bench_rounds": 1, "crop": "32x48", "batch": "2", "epochs": 2,
        "train_args": ["--limit", "8", "--workers", "0", "--threads", "1", "--data-on-device", "on"]}


def log(text: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {text}", flush=True)


def environment(device: str) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "cpu_count": os.cpu_count(), "device": device, "host": platform.node()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count)
    return env


def install(wheels: Path | None) -> dict:
    """The image's Python lacks a few of rtseg's packages (PyAV): install the wheels carried along
    into a private folder, and make rtseg importable (``pip install -e``, else the source tree)."""
    done = {}
    site = Path("/tmp/rtseg-site")
    paths = [str(ROOT)]
    if wheels is not None and any(wheels.glob("*.whl")):
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--upgrade", "--target", str(site), *map(str, sorted(wheels.glob("*.whl")))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        done["wheels"] = {"ok": proc.returncode == 0, "files": [p.name for p in sorted(wheels.glob("*.whl"))],
                          "error": proc.stderr.strip()[-300:] if proc.returncode else None}
        paths.append(str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    sys.path[:0] = [p for p in paths if p not in sys.path]
    return done


def rtseg_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from rtseg.cli import main; main()", *map(str, args)]


def run_logged(cmd: list[str], log_path: Path, timeout: float) -> tuple[int, float]:
    """Run ``cmd`` with stdout+stderr appended to ``log_path``; (exit code, seconds). 124 = timed out."""
    t0 = time.perf_counter()
    with open(log_path, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, round(time.perf_counter() - t0, 1)


def gpu_tests(out: Path, timeout: float) -> dict:
    """``pytest -m gpu``: counts from its JUnit XML (TensorRT's tests skip where it is not installed)."""
    xml = Path("/tmp/rtseg_pytest_gpu.xml")
    xml.unlink(missing_ok=True)
    code, secs = run_logged([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
                             f"--junitxml={xml}"], out / "pytest_gpu.log", timeout)
    result = {"exit_code": code, "seconds": secs}
    if xml.is_file():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        result.update(counts)
        result["not_passed"] = sorted({f"{case.get('classname')}::{case.get('name')}: {child.tag} "
                                       f"{(child.get('message') or '')[:160]}"
                                       for case in suite.iter("testcase") for child in case
                                       if child.tag in ("failure", "error", "skipped")})
    return result


def bench_part(out: Path, device: str, tiny: bool) -> dict:
    sizes = TINY["bench_sizes"] if tiny else ["512x1024", "1024x2048"]
    frames = TINY["bench_frames"] if tiny else 150
    rounds = TINY["bench_rounds"] if tiny else 3
    results = {}
    for size in sizes:
        path = out / f"bench_{size}.json"
        code, secs = run_logged(rtseg_cmd("bench", "--device", device, "--size", size, "--frames", frames,
                                          "--rounds", rounds, "--json", path), out / "bench.log", timeout=240)
        entry = {"exit_code": code, "seconds": secs}
        if code == 0 and path.is_file():
            entry["result"] = json.loads(path.read_text())
            r = entry["result"]
            entry["pipelined_vs_engine_only"] = round(r["pipelined"]["fps"] / r["engine_only"]["fps"], 3)
            log(f"bench {size}: engine alone {r['engine_only']['fps']:.1f} fps, pipelined {r['pipelined']['fps']:.1f}, "
                f"sequential {r['sequential']['fps']:.1f}")
        else:
            log(f"bench {size}: failed (exit {code}); see bench.log")
        results[size] = entry
    return results


def graph_check(device: str, tiny: bool) -> dict:
    """The PyTorch engine alone with its forward replayed as a CUDA graph (the default on CUDA)
    and run eagerly, in interleaved rounds on one real frame, and the ids they agree on. On the
    CPU (``--cpu``) both are the same eager path: the step is rehearsed, not measured."""
    import statistics

    import cv2

    from rtseg.bundled import BENCH_FRAME, DEFAULT_WEIGHTS
    from rtseg.engines.torch_engine import TorchEngine

    frame = cv2.imread(str(BENCH_FRAME))
    calls = 3 if tiny else 200
    results = {}
    for h, w in ([(64, 128)] if tiny else [(512, 1024), (1024, 2048)]):
        batch = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)[None]
        engines = {mode: TorchEngine(DEFAULT_WEIGHTS, device=device, size=(h, w), cuda_graphs=mode == "graph")
                   for mode in ("graph", "eager")}
        ids = {mode: e.infer(batch) for mode, e in engines.items()}  # the first call captures the graph
        fps: dict[str, list[float]] = {mode: [] for mode in engines}
        for r in range(3):
            for mode in (("graph", "eager") if r % 2 == 0 else ("eager", "graph")):
                t0 = time.perf_counter()
                for _ in range(calls):
                    engines[mode].infer(batch)
                fps[mode].append(calls / (time.perf_counter() - t0))
        buffers = getattr(engines["graph"], "_buffers", {})
        entry = {"graph_fps": round(statistics.median(fps["graph"]), 1), "eager_fps": round(statistics.median(fps["eager"]), 1),
                 "graph_captured": any(b.graph is not None for b in buffers.values()),
                 "ids_agree": round(float((ids["graph"] == ids["eager"]).mean()), 6)}
        entry["graph_vs_eager"] = round(entry["graph_fps"] / entry["eager_fps"], 3)
        log(f"engine alone {h}x{w}: CUDA graph {entry['graph_fps']} fps, eager {entry['eager_fps']} fps "
            f"({entry['graph_vs_eager']}x; captured: {entry['graph_captured']}; ids agree {entry['ids_agree']:.4%})")
        results[f"{h}x{w}"] = entry
    return results


def probe_speed(data: Path, device: str, crop: tuple[int, int], batch: int, steps: int, compile: bool = False) -> dict:
    """Training images/s of RECIPE's step (gather, augment on the device, forward, backward, SGD)
    in this process, after warm-up; one process alone on the device. ``compile``: the network
    through torch.compile as ``rtseg train --compile`` runs it (CUDA graphs on CUDA); the warm-up,
    which compiles, is timed apart (``warmup_s``)."""
    import torch

    from rtseg.nets import create_model
    from rtseg.train.data import build_dataset
    from rtseg.train.device_data import DeviceData
    from rtseg.train.losses import build_loss
    from rtseg.train.optim import autocast_and_scaler, build_optimizer
    from rtseg.train.transforms import AugmentConfig

    torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    ds = build_dataset("camvid", data, "train+val")
    held = DeviceData(ds, range(len(ds)), device)
    decode_s = time.perf_counter() - t0
    model = create_model("fastscnn", num_classes=11, aux=True).to(device, memory_format=torch.channels_last).train()
    crit = build_loss("ce", ignore_index=255, aux_weight=0.4).to(device)
    opt = build_optimizer(model, "sgd", lr=0.01, weight_decay=4e-5)
    autocast, scaler = autocast_and_scaler("auto", device)
    aug = AugmentConfig(scale=(0.5, 2.0), crop=crop, jitter=0.3)
    g = torch.Generator().manual_seed(0)

    def epoch_batches():
        while True:
            yield from held.batches(batch, aug, g, drop_last=True)

    it = epoch_batches()
    warm = max(3, steps // 3)
    graphs = compile and device == "cuda"
    net = torch.compile(model, mode="reduce-overhead" if graphs else "default") if compile else model
    t_warm = time.perf_counter()
    for i in range(warm + steps):
        if i == warm:
            if device == "cuda":
                torch.cuda.synchronize()
            t1 = time.perf_counter()
        images, labels = next(it)
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            loss = crit(net(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()  # waits for the device
    secs = time.perf_counter() - t1
    return {"images_per_s": round(steps * batch / secs, 1), "steps": steps, "batch": batch, "compile": compile,
            "warmup_s": round(t1 - t_warm, 1), "crop": list(crop), "decode_s": round(decode_s, 2), "frames_held": len(held)}


def train_part(out: Path, data: Path, device: str, tiny: bool, budget: float, concurrency: float) -> dict:
    if not (data / "train").is_dir():
        return {"error": f"no CamVid data at {data} (make it with benchmarks/pack_camvid.py)"}
    crop = TINY["crop"] if tiny else "360x480"
    batch = TINY["batch"] if tiny else "16"
    h, w = (int(v) for v in crop.split("x"))
    probe = probe_speed(data, device, (h, w), int(batch), steps=4 if tiny else 60)
    log(f"probe: {probe['images_per_s']:.0f} training images/s alone ({probe})")
    # torch.compile with CUDA graphs, if it pays for its compiling within the budget. Not probed on
    # the CPU rehearsal: inductor takes minutes to compile there (the loop's --compile is tested apart).
    compiled, use_compile = None, False
    if not tiny:
        try:
            compiled = probe_speed(data, device, (h, w), int(batch), steps=60, compile=True)
            log(f"probe, compiled: {compiled['images_per_s']:.0f} images/s after {compiled['warmup_s']} s of warm-up")
            use_compile = compiled["images_per_s"] * max(0.0, budget - 2 * compiled["warmup_s"]) > probe["images_per_s"] * budget
        except Exception as exc:  # a compiler failure must not cost the training runs
            compiled = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            log(f"probe, compiled: failed ({compiled['error']}); training eagerly")
    speed = compiled["images_per_s"] if use_compile else probe["images_per_s"]
    usable = budget - (2 * compiled["warmup_s"] if use_compile else 0.0)  # compiling again in each run, allowing for two runs at once
    frames = {"train": len(list((data / "train").iterdir())), "val": len(list((data / "val").iterdir()))}
    biggest = frames["train"] + frames["val"]
    # Both runs share the device: each is assumed to keep `concurrency` of the speed it has alone.
    fit = int(usable * speed * concurrency / biggest)
    epochs = TINY["epochs"] if tiny else max(1, min(RECIPE_EPOCHS, fit))
    log(f"epochs: {epochs} ({fit} would fit into {budget:.0f} s; the recipe's is {RECIPE_EPOCHS})")
    recipe = list(RECIPE) + (["--compile"] if use_compile else [])
    recipe[recipe.index("--crop") + 1] = crop
    recipe[recipe.index("--batch-size") + 1] = batch
    recipe[recipe.index("--val-size") + 1] = crop
    runs = {"train": {"split": "train", "val_every": max(1, epochs // 20)},  # a val curve: 20 points
            "trainval": {"split": "train+val", "val_every": epochs}}  # val is inside its training data: scored once
    procs = {}
    for name, spec in runs.items():
        run_dir = Path("/tmp/rtseg_runs") / name
        cmd = rtseg_cmd("train", "--dataset", "camvid", "--data-root", data, "--train-split", spec["split"],
                        "--val-split", "val", "--out", run_dir, "--epochs", epochs, "--val-every", spec["val_every"],
                        "--device", device, "--no-tensorboard", "--quiet", *recipe, *(TINY["train_args"] if tiny else []))
        log_file = open(out / f"train_{name}.log", "w")
        log_file.write("$ " + " ".join(map(str, cmd)) + "\n")
        log_file.flush()
        procs[name] = (subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT), run_dir, log_file,
                       time.perf_counter())
    result = {"probe": probe, "probe_compiled": compiled, "compile": use_compile, "epochs": epochs, "epochs_that_fit": fit, "recipe": recipe, "runs": {}}
    deadline = time.perf_counter() + max(60.0, budget * 1.6)  # a run far slower than the probe said is stopped
    for name, (proc, run_dir, log_file, t0) in procs.items():
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = 124
        log_file.close()
        secs = time.perf_counter() - t0
        entry = {"split": runs[name]["split"], "exit_code": code, "wall_s": round(secs, 1)}
        history_file = run_dir / "history.json"
        if history_file.is_file():
            history = json.loads(history_file.read_text())
            train_s = sum(r["seconds"] for r in history)
            images = sum(r["steps"] for r in history) * int(batch)
            entry.update(epochs_run=len(history), train_s=round(train_s, 1),
                         images_per_s=round(images / max(train_s, 1e-9), 1),
                         final_train_loss=history[-1]["train_loss"],
                         val_curve=[(r["epoch"], round(r["val_miou"], 4)) for r in history if "val_miou" in r])
            last_val = [r for r in history if "val_miou" in r]
            if last_val:
                entry["final_val_miou"] = last_val[-1]["val_miou"]
        last = run_dir / "last.pt"
        if last.is_file():
            dest = out / f"fastscnn_camvid_{name}_last.pt"
            dest.write_bytes(last.read_bytes())
            entry["checkpoint"] = dest.name
        result["runs"][name] = entry
        log(f"train {name}: exit {code}, {entry.get('epochs_run', 0)} epochs in {secs:.0f} s, "
            f"{entry.get('images_per_s', 0):.0f} images/s, final val mIoU {entry.get('final_val_miou', float('nan')):.4f}")
    bad = [f"{name} exited {e['exit_code']}" for name, e in result["runs"].items() if e["exit_code"] != 0]
    if bad:
        result["error"] = "; ".join(bad) + " (see train_*.log)"
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="rtseg's checks on a CUDA machine (docs/gpu.md)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the summary JSON, logs and checkpoints")
    ap.add_argument("--part", choices=("bench", "train", "all"), default="all")
    ap.add_argument("--cpu", action="store_true", help="the same steps on the CPU with tiny sizes (CI)")
    ap.add_argument("--data", type=Path, default=ROOT / ".gpu" / "camvid", help="CamVid (benchmarks/pack_camvid.py)")
    ap.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="wheels to install first (benchmarks/gpu_wheels.sh)")
    ap.add_argument("--train-budget", type=float, default=330.0, help="seconds the two training runs may take together")
    ap.add_argument("--concurrency", type=float, default=0.75,
                    help="share of its solo speed each of the two concurrent runs is assumed to keep")
    ap.add_argument("--skip-tests", action="store_true", help="leave out pytest -m gpu")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary: dict = {"part": args.part, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    summary["install"] = {} if args.cpu else install(args.wheels)
    import torch

    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("error: this PyTorch sees no CUDA GPU; run with --cpu for the CPU rehearsal", file=sys.stderr)
        return 2
    summary["environment"] = environment(device)
    log(f"environment: {summary['environment']}")
    if args.part in ("bench", "all"):
        if not args.skip_tests:
            summary["pytest_gpu"] = gpu_tests(args.out, timeout=150 if not args.cpu else 600)
            t = summary["pytest_gpu"]
            log(f"pytest -m gpu: exit {t['exit_code']}, {t.get('passed')} passed, {t.get('failures')} failed, "
                f"{t.get('errors')} errors, {t.get('skipped')} skipped in {t['seconds']} s")
        summary["bench"] = bench_part(args.out, device, args.cpu)
        summary["cuda_graph"] = graph_check(device, args.cpu)
    if args.part in ("train", "all"):
        summary["train"] = train_part(args.out, args.data, device, args.cpu, args.train_budget, args.concurrency)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    from rtseg.machine import describe

    summary["machine"] = describe()  # CPU model and flags, cores, GPUs, library versions
    path = args.out / f"gpu_check_{args.part}.json"
    path.write_text(json.dumps(summary, indent=1) + "\n")
    log(f"wrote {path} ({summary['seconds']} s)")
    failed = [k for k, v in summary.items() if isinstance(v, dict) and v.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
