"""What this machine can run: Python, torch and its devices, ONNX Runtime providers, TensorRT,
pycuda and OpenVINO, OpenCV's video and GUI backends, and the bundled files.

:func:`run_checks` returns plain data (``rtseg doctor`` draws it as a table; ``--json`` dumps it).
Nothing here raises for a missing optional package: that is what it reports.
"""
from __future__ import annotations

import importlib
import os
import platform
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable

__all__ = ["Check", "run_checks", "auto_choices"]


@dataclass(frozen=True)
class Check:
    """One row: ``ok`` is True (usable), False (missing or broken) or None (information only)."""

    section: str  # "system", "engines", "video", "files", "usable", "auto"
    name: str
    ok: bool | None
    version: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _import(name: str) -> tuple[Any | None, str]:
    """(module, "") or (None, reason). TensorRT and pycuda raise OSError when CUDA libraries are missing."""
    try:
        return importlib.import_module(name), ""
    except ModuleNotFoundError:
        return None, "not installed"
    except (ImportError, OSError, RuntimeError) as exc:
        return None, f"import fails: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}" if str(exc) else type(exc).__name__


def _torch() -> list[Check]:
    torch, why = _import("torch")
    if torch is None:
        return [Check("engines", "torch", False, detail=why)]
    rows = [Check("engines", "torch", True, torch.__version__, f"CPU threads {torch.get_num_threads()}")]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        rows.append(Check("engines", "torch CUDA", True, str(torch.version.cuda),
                          f"{len(names)} device(s): " + "; ".join(f"cuda:{i} {n}" for i, n in enumerate(names))))
    else:
        build = "CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build, no GPU visible"
        rows.append(Check("engines", "torch CUDA", False, detail=build))
    return rows


def _onnx() -> list[Check]:
    rows = []
    for name in ("onnx", "onnxscript"):
        mod, why = _import(name)
        note = "" if name == "onnx" else "cleans exported graphs (rtseg[export])"
        rows.append(Check("engines", name, mod is not None, getattr(mod, "__version__", ""), why or note))
    ort, why = _import("onnxruntime")
    if ort is None:
        return rows + [Check("engines", "onnxruntime", False, detail=why)]
    return rows + [Check("engines", "onnxruntime", True, ort.__version__,
                         "providers: " + ", ".join(ort.get_available_providers()))]


def _openvino() -> list[Check]:
    ov, why = _import("openvino")
    if ov is None:
        return [Check("engines", "openvino", False, detail=why + " (pip install 'rtseg[openvino]')")]
    try:
        from rtseg.engines.openvino_engine import new_core

        devices = ", ".join(new_core().available_devices)
    except RuntimeError as exc:
        devices = f"no devices ({str(exc).splitlines()[0][:80]})"
    return [Check("engines", "openvino", True, ov.__version__.split("-")[0], f"devices: {devices}")]


def _tensorrt() -> list[Check]:
    rows = []
    for name, mod_name in (("tensorrt", "tensorrt"), ("pycuda", "pycuda.driver")):
        mod, why = _import(mod_name)
        version = getattr(mod, "__version__", "") if mod else ""
        if mod is not None and not version:
            version = getattr(importlib.import_module("pycuda"), "VERSION_TEXT", "")
        rows.append(Check("engines", name, mod is not None, version, why and why + " (pip install 'rtseg[trt]')"))
    return rows


def _opencv() -> list[Check]:
    cv2, why = _import("cv2")
    if cv2 is None:
        return [Check("video", "opencv", False, detail=why)]
    from cv2 import videoio_registry as reg

    info = cv2.getBuildInformation()
    gui = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.strip().startswith("GUI:")), "unknown")
    rows = [Check("video", "opencv", True, cv2.__version__)]

    def names(list_fn: Callable[[], Any]) -> str:
        usable = [reg.getBackendName(b) for b in list_fn() if reg.hasBackend(b)]
        return ", ".join(dict.fromkeys(usable)) or "none"

    rows.append(Check("video", "video files/streams", None, detail=names(reg.getStreamBackends)))
    rows.append(Check("video", "cameras", None, detail=names(reg.getCameraBackends)))
    rows.append(Check("video", "video writers", None, detail=names(reg.getWriterBackends)))
    av, why = _import("av")
    x264 = av is not None and "libx264" in av.codecs_available
    rows.append(Check("video", "H.264 output (PyAV)", x264, getattr(av, "__version__", ""),
                      "mp4/mov/mkv written as H.264" if x264 else
                      (why or "PyAV has no libx264") + ": mp4v instead (pip install av)"))
    has_gui = gui.upper() not in ("NONE", "NO", "UNKNOWN", "")
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    rows.append(Check("video", "GUI (--show, webcam)", has_gui and bool(display or sys.platform != "linux"), gui,
                      f"display {display}" if display else "no DISPLAY/WAYLAND_DISPLAY: windows cannot open"))
    return rows


def _rerun() -> list[Check]:
    rr, why = _import("rerun")
    return [Check("video", "Rerun SDK (--rerun)", rr is not None, getattr(rr, "__version__", ""),
                  "logs runs to a Rerun viewer or an .rrd file" if rr is not None else why + " (pip install 'rtseg[rerun]')")]


def _files() -> list[Check]:
    from rtseg.bundled import BENCH_FRAME, DEFAULT_WEIGHTS, DEMO_CLIP

    rows = []
    for name, path in (("bundled weights", DEFAULT_WEIGHTS), ("demo clip", DEMO_CLIP), ("benchmark frame", BENCH_FRAME)):
        there = path.is_file()
        rows.append(Check("files", name, there, detail=str(path) if there else f"missing: {path}"))
    return rows


def _engines(rows: list[Check]) -> list[Check]:
    """Summary: which runtimes of the table (rtseg.engines.runtimes) open_engine can use here."""
    from rtseg.engines.runtimes import TABLE

    label = {name: f"{name} ({row.suffixes[0]})" for name, row in TABLE.items()}  # "pytorch (.pt)"
    ok = {r.name: r.ok for r in rows}
    cuda = bool(ok.get("torch CUDA"))
    providers = next((r.detail for r in rows if r.name == "onnxruntime"), "")
    ort_devices = "cpu" + (", cuda" if "CUDAExecutionProvider" in providers else "") + (
        " (+ TensorRT provider)" if "TensorrtExecutionProvider" in providers else "")
    return [
        Check("usable", label["pytorch"], bool(ok.get("torch")), detail="cpu" + (", cuda" if cuda else "")),
        Check("usable", label["onnxruntime"], bool(ok.get("onnxruntime")), detail=ort_devices),
        Check("usable", label["openvino"], bool(ok.get("openvino")),
              detail=next((r.detail for r in rows if r.name == "openvino" and r.ok), "")),
        Check("usable", label["tensorrt"], bool(ok.get("tensorrt")) and cuda,
              detail="" if cuda else "needs an NVIDIA GPU with CUDA"),
        *_auto_rows(cuda),
    ]


def _auto_rows(cuda: bool) -> list[Check]:
    """What ``--runtime auto`` (the default of run, webcam, bench and eval) falls back to here
    when it does not measure (RTSEG_AUTO_PROBE=0), and why."""
    from rtseg.engines import resolve_runtime, runtime_reason

    rows = []
    for device in ("cpu", "cuda") if cuda else ("cpu",):
        rt = resolve_runtime(None, "auto", device)
        rows.append(Check("usable", f"auto on {device}, unmeasured", None, rt, f"the fixed rule (RTSEG_AUTO_PROBE=0): "
                          f"{runtime_reason(rt, device)}"))
    return rows


def _choice_row(choice: Any, how: str) -> Check:
    """One of auto's choices: what it measured (ms a frame) and which it kept."""
    about = choice.about
    size = "x".join(map(str, about.get("size", ())))
    times = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(choice.ms.items(), key=lambda kv: kv[1]))
    rejected = "".join(f"; {k}: {why}" for k, why in choice.rejected.items())
    name = f"{about.get('weights', '?')} at {size} on {about.get('device', '?')}, {about.get('streams', 1)} stream(s)"
    busy = about.get("busy_other")
    load = "" if busy is None else f"; other work used {100 * busy:.0f}% of the CPU"
    again = "; provisional: the next run measures again" if choice.provisional else ""
    return Check("auto", name, True, f"{choice.runtime} {choice.precision}",
                 f"{times}{rejected} ({how} {about.get('when', '')}; probe {about.get('probe_s', 0):.1f} s{load}{again})")


def auto_choices(measure: bool = True) -> list[Check]:
    """auto's cached choices for this machine (rtseg.engines.probe); when there are none and
    ``measure``, it measures once for the bundled weights at their own size on the CPU."""
    from rtseg.engines import probe
    from rtseg.machine import machine_key

    here = machine_key()
    mine = [c for c in probe.cached_choices().values() if c.about.get("machine_key") == here]
    others = len(probe.cached_choices()) - len(mine)
    rows = [_choice_row(c, "cached") for c in mine]
    if not mine and measure and os.environ.get("RTSEG_AUTO_PROBE", "1") != "0":
        rows += _measure_bundled()
    elif not mine:
        rows.append(Check("auto", "choices", None, detail=f"none cached for this machine ({probe.choices_file()}); "
                          "the first rtseg run/bench measures"))
    if others:
        rows.append(Check("auto", "other machines", None, detail=f"{others} choice(s) cached for another CPU, GPU "
                          "or library versions (measured again here when met)"))
    return rows


def _measure_bundled() -> list[Check]:
    """Measure auto's choice now for the bundled weights at their own size, as `rtseg run` would."""
    from rtseg.bundled import DEFAULT_WEIGHTS
    from rtseg.engines import auto_streams, open_engine, probe
    from rtseg.errors import RtsegError

    if not DEFAULT_WEIGHTS.is_file():
        return [Check("auto", "choices", None, detail="none cached, and no bundled weights to measure")]
    streams = auto_streams(None, "cpu", live=False)
    try:
        open_engine(None, device="cpu", runtime="auto", streams=streams, note=lambda _: None)
    except RtsegError as exc:
        return [Check("auto", "choices", False, detail=f"measuring failed: {exc}")]
    return [_choice_row(c, "measured now,") for c in probe.cached_choices().values()
            if c.about.get("weights") == DEFAULT_WEIGHTS.name][-1:]


def run_checks(measure: bool = True) -> list[Check]:
    """Every check, in display order; ``measure``: let auto measure once when nothing is cached."""
    from rtseg import machine

    rows = [Check("system", "python", True, platform.python_version(), sys.executable),
            Check("system", "platform", None, f"{platform.system()} {platform.release()} {platform.machine()}", f"{len(os.sched_getaffinity(0))} CPU cores usable"),
            Check("system", "cpu", None, machine.cpu_model(), "flags: " + (" ".join(machine.cpu_flags()) or "none of "
                  + ", ".join(machine.FLAGS)) + ("; native bf16" if machine.native_bf16() else "; no native bf16"))]
    rows += _torch() + _onnx() + _openvino() + _tensorrt() + _opencv() + _rerun() + _files()
    rows += _engines(rows)
    return rows + auto_choices(measure)
