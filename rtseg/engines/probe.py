"""``--runtime auto`` by measurement: the first time it meets weights at a size, on a device, with
a number of streams, on this machine, it times every installed candidate on a few real frames and
keeps the fastest whose class ids agree with the reference's (PyTorch fp32 for a ``.pt``, ONNX
Runtime fp32 for a ``.onnx``) on at least :data:`AGREEMENT` of the pixels. The choice is cached
beside the export cache (``auto_runtime.json`` in :func:`~rtseg.engines.cache.cache_root`), keyed
by the machine (:func:`rtseg.machine.machine_key`), the weights' content, size, device, streams,
threads and the precision asked for, so later runs open at once. TensorRT's builder, cuDNN's
benchmark mode and FFTW's planner measure in the same way instead of guessing.

A fixed rule is wrong on the next machine: on an AMD EPYC (AVX2 only) ONNX Runtime runs Fast-SCNN
faster than OpenVINO f32; on an Intel Xeon with AMX, OpenVINO bf16 runs it 1.9x faster than
OpenVINO f32 (benchmarks/results/auto_runtime.json, cpu_engines.json).

Every candidate is opened first (the reference first: its ids are the ones to match), then they
are timed in rounds in which they take turns, each round starting one further along, so that a
burst of other work lands on all of them alike; the median round counts. Other work during the
timing is measured too (:func:`busy_other`: the share of the CPUs this process may use that other
processes kept busy). A choice measured while other work used over :data:`BUSY` of them is
provisional: it is used for that run, and the next run measures again, up to
:data:`BUSY_PROBES` busy probes in a row (then the last one stays); a quiet probe is final.

Cost: loading every candidate, one pass over the frames for their ids, and the timed rounds (at
least one) share ``budget_s`` (5 s by default: a first run at 512x1024 on a 2-core EPYC measured
about 3 s). Exporting a ``.pt`` into the export cache for a runtime is separate, and happens once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rtseg import machine
from rtseg.engines.agreement import (AGREEMENT, SURE_AGREEMENT, SURE_MARGIN, agreement, ids_and_margins,
                                    refusal)
from rtseg.engines.base import Engine, infer_calls
from rtseg.errors import RtsegError

__all__ = ["AGREEMENT", "SURE_AGREEMENT", "SURE_MARGIN", "BUDGET_S", "BUSY", "BUSY_PROBES", "Candidate", "Choice", "candidates", "probe_key",
           "choices_file", "cached_choices", "choose", "cpu_mark", "busy_other", "probe_frames"]

log = logging.getLogger(__name__)

BUDGET_S = 5.0  # seconds of probing in all (loading and timing; exports are separate)
FRAMES = 3  # windows of the bundled street frame the candidates are timed on
ROUNDS = 5  # timed rounds at most (each candidate once a round)
BUSY = 0.25  # share of the CPUs other work may use during a probe for its choice to be final
BUSY_PROBES = 2  # busy probes in a row after which the last one stays: one provisional re-probe at most
ENGINES = 2  # raised when rtseg changes how fast a runtime runs (2: OpenVINO's ids made on the host), so
# that choices cached before are measured again
_STAT = "/proc/stat"
_FILE = "auto_runtime.json"
_lock = threading.Lock()  # one probe at a time in this process (bench opens two engines)


@dataclass(frozen=True)
class Candidate:
    """A runtime at a precision (fp32, bf16, fp16)."""

    runtime: str
    precision: str

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"


@dataclass
class Choice:
    """What a probe found: the pick, each candidate's ms a frame and agreement with the reference."""

    runtime: str
    precision: str
    ms: dict[str, float] = field(default_factory=dict)  # label -> ms a frame (streams busy)
    agreement: dict[str, float] = field(default_factory=dict)  # label -> share of pixels as the reference
    rejected: dict[str, str] = field(default_factory=dict)  # label -> why it did not count
    about: dict[str, Any] = field(default_factory=dict)  # weights, size, device, streams, when, probe_s

    def line(self, cached: bool) -> str:
        """The one line a run says: the pick and the times."""
        mine = f"{self.runtime} {self.precision}"
        others = ", ".join(f"{k} {v:.1f}" for k, v in sorted(self.ms.items(), key=lambda kv: kv[1]) if k != mine)
        rejected = "".join(f"; {k}: {why}" for k, why in self.rejected.items())
        size = "x".join(map(str, self.about.get("size", ())))
        forced = self.about.get("title", "auto") != "auto"
        skip = "" if cached else (f"; --precision {self.precision} skips the check" if forced
                                  else f"; --runtime {self.runtime} skips the measuring")
        return (f"{self.about.get('title', 'auto')}: {mine}, {self.ms.get(mine, float('nan')):.1f} ms a frame at {size}"
                f" ({others or 'no other candidate'}{rejected}; {self._how(cached)}; rtseg doctor lists it{skip})")

    @property
    def provisional(self) -> bool:
        """Measured while other work used over :data:`BUSY` of the CPUs, and not yet
        :data:`BUSY_PROBES` times in a row, or cached by an rtseg that did not measure the load
        (no ``busy_other``): a later run measures again."""
        if "busy_other" not in self.about or "rule" not in self.about:  # cached by an older rtseg: measure again
            return True
        busy = self.about.get("busy_other")
        return busy is not None and busy > BUSY and self.about.get("busy_probes", 0) < BUSY_PROBES

    def _how(self, cached: bool) -> str:
        how = "measured earlier on this machine" if cached else f"measured now in {self.about.get('probe_s', 0):.1f} s"
        busy = self.about.get("busy_other")
        if busy is not None and busy > BUSY:  # the times may be the other work's: say so
            how += f" while other work used {100 * busy:.0f}% of the CPU"
        if cached:
            return how
        if self.provisional:
            return how + "; auto measures again on a later run"
        busy_probes = self.about.get("busy_probes", 0)
        return how + (f", cached ({busy_probes} busy probes in a row: kept)" if busy_probes else ", cached")


def candidates(family: str, cuda: bool, precision: str = "auto", installed: Callable[[str], bool] | None = None,
               bf16: bool | None = None) -> list[Candidate]:
    """What auto weighs for an artifact of ``family`` (pytorch, onnx), the reference first.

    CPU: PyTorch fp32 (a ``.pt``), ONNX Runtime fp32, OpenVINO f32, and OpenVINO bf16 where the
    CPU computes bf16 natively (:func:`rtseg.machine.native_bf16`). CUDA: PyTorch fp32 (the
    reference), TensorRT fp16 where it imports, PyTorch fp16. ``precision`` other than auto keeps
    the candidates at that precision (the reference is still measured, for the ids)."""
    import importlib.util

    have = installed or (lambda name: importlib.util.find_spec(name) is not None)
    bf16 = machine.native_bf16() if bf16 is None else bf16
    if family == "pytorch" and cuda:
        rows = [Candidate("pytorch", "fp32"), Candidate("tensorrt", "fp16"), Candidate("pytorch", "fp16")]
    elif family == "pytorch":
        rows = [Candidate("pytorch", "fp32"), Candidate("onnxruntime", "fp32"), Candidate("openvino", "fp32"),
                Candidate("openvino", "bf16")]
    elif family == "openvino":  # an OpenVINO IR: OpenVINO alone runs it
        rows = [Candidate("openvino", "fp32"), Candidate("openvino", "bf16")]
    elif cuda:
        rows = [Candidate("onnxruntime", "fp32")]
    else:
        rows = [Candidate("onnxruntime", "fp32"), Candidate("openvino", "fp32"), Candidate("openvino", "bf16")]
    module = {"pytorch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}
    rows = [c for c in rows if have(module[c.runtime]) and (c.precision != "bf16" or bf16)]
    return [c for i, c in enumerate(rows) if i == 0 or precision in ("auto", c.precision)]


def choices_file() -> Path:
    from rtseg.engines.cache import cache_root

    return cache_root() / _FILE


def probe_key(weights: Path, *, size: Sequence[int], device: str, streams: int, threads: int,
              precision: str) -> str:
    """The cache key: this machine, the weights' content and how they run."""
    from rtseg.engines.cache import file_digest

    h, w = size
    text = (f"engines={ENGINES};machine={machine.machine_key()};sha256={file_digest(weights)};size={h}x{w};"
            f"device={device};streams={streams};threads={threads};precision={precision}")
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_choices() -> dict[str, Choice]:
    """Every cached choice ({} when there is no file or it is unreadable)."""
    try:
        data = json.loads(choices_file().read_text())
        return {k: Choice(**v) for k, v in data.get("choices", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _store(key: str, choice: Choice) -> None:
    """Add ``choice`` to the file: written to a temporary name and renamed into place."""
    path = choices_file()
    entries = {k: asdict(v) for k, v in cached_choices().items()}
    entries[key] = asdict(choice)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auto_runtime-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": 1, "choices": entries}, fh, indent=1)
        os.replace(tmp, path)
    except OSError as exc:  # an unwritable cache: the choice holds for this run only
        log.warning("cannot cache auto's runtime choice in %s (%s); the next run measures again", path, exc)


def probe_frames(size: Sequence[int], n: int | None = None) -> list[np.ndarray]:
    """``n`` BGR frames (h, w, 3) of the bundled street frame: windows from left to right."""
    import cv2

    from rtseg.bundled import BENCH_FRAME, bundled

    image = cv2.imread(str(bundled(BENCH_FRAME, "benchmark frame")), cv2.IMREAD_COLOR)
    n = FRAMES if n is None else n
    h, w = size
    H, W = image.shape[:2]
    win_w = min(W, int(round(H * w / h)))  # the size's shape, as tall as the image allows
    win_h = min(H, int(round(win_w * h / w)))
    xs = np.linspace(0, W - win_w, n).astype(int)
    return [cv2.resize(image[(H - win_h) // 2:(H - win_h) // 2 + win_h, x:x + win_w], (w, h),
                       interpolation=cv2.INTER_AREA) for x in xs]


def _timed(engine: Engine, batches: list[np.ndarray], calls: int) -> float:
    """Seconds a frame over ``calls`` infer calls made from ``engine.streams`` threads at once."""
    return infer_calls(engine, batches, calls, name="rtseg-probe") / calls


@dataclass
class _Opened:
    """A candidate's engine, opened, with its frames preprocessed and their ids."""

    cand: Candidate
    engine: Engine
    batches: list[np.ndarray]
    ids: list[np.ndarray]
    margins: list[np.ndarray] | None = None  # the reference's top-1 minus top-2 probability (it gives scores)

    @property
    def calls(self) -> int:  # a round: every frame on every stream
        return len(self.batches) * max(1, getattr(self.engine, "streams", 1))


def _open_all(cands: list[Candidate], opener: Callable[[Candidate], Engine], prepare: Callable[[Candidate], None],
              frames: list[np.ndarray], opened: list[_Opened], rejected: dict[str, str], budget_s: float) -> float:
    """Open every candidate into ``opened`` (the caller closes them), each with one pass over the
    frames (its ids; also the warm-up); one that cannot open goes into ``rejected``, except the
    reference (the first), whose error is raised. The budget holds here too: once loading has used
    it, the candidates left are not opened, and one whose loading and first frames took longer
    than what was left loses (a large model on a busy machine). Returns the seconds spent exporting."""
    export_s, spent = 0.0, 0.0
    for i, cand in enumerate(cands):
        if i and spent >= budget_s:
            rejected[cand.label] = f"not measured: loading the others used the probe's {budget_s:g} s"
            continue
        t0 = time.perf_counter()
        try:
            prepare(cand)
            exported = time.perf_counter() - t0
            export_s += exported
            engine = opener(cand)
        except Exception as exc:  # a runtime that is installed but cannot run this: not a candidate
            rejected[cand.label] = f"cannot open ({str(exc).splitlines()[0][:80]})"
            if i == 0:
                raise
            continue
        one = _Opened(cand, engine, [], [])
        opened.append(one)
        one.batches = [engine.preprocess([f]) for f in frames]
        if i == 0 and getattr(engine, "has_scores", False):  # the reference: how sure it is, pixel by pixel
            one.ids, one.margins = ids_and_margins(engine, one.batches)
        else:
            one.ids = [engine.infer(b)[0] for b in one.batches]
        took = time.perf_counter() - t0 - exported
        if i and took > budget_s - spent:
            rejected[cand.label] = f"too slow: loading and its first {len(frames)} frames took {took:.1f} s"
        spent += took
    return export_s


def _rounds(opened: list[_Opened], budget_s: float) -> dict[str, float]:
    """ms a frame per candidate: rounds in which every candidate is timed once, each round
    starting one further along the list (a burst of other work lands on all alike), at least
    one round and up to :data:`ROUNDS` while ``budget_s`` lasts. The median round counts."""
    t0 = time.perf_counter()
    times: dict[str, list[float]] = {o.cand.label: [] for o in opened}
    for r in range(ROUNDS):
        started = time.perf_counter()
        for o in opened[r % len(opened):] + opened[:r % len(opened)]:
            times[o.cand.label].append(_timed(o.engine, o.batches, o.calls))
        # The next round only when it fits with a margin (a loaded machine's rounds vary).
        if time.perf_counter() - t0 + 1.5 * (time.perf_counter() - started) >= budget_s:
            break
    return {label: 1000 * float(np.median(v)) for label, v in times.items()}


Mark = tuple[float, float, float, int]  # cpu_mark's (busy CPU s, own CPU s, wall s, CPUs)


def cpu_mark() -> Mark | None:
    """(busy CPU seconds of the CPUs this process may run on, this process's CPU seconds (all its
    threads), wall seconds, those CPUs' count) now; None where /proc/stat cannot be read (not Linux)."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        cpus = set(range(os.cpu_count() or 1))
    try:
        with open(_STAT) as fh:
            rows = [line.split() for line in fh if line.startswith("cpu")]
        hz = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal (guest is counted in user already)
        mine = [r for r in rows if r[0][3:].isdigit() and int(r[0][3:]) in cpus] or [r for r in rows if r[0] == "cpu"]
        busy = sum(int(r[1]) + int(r[2]) + int(r[3]) + sum(int(v) for v in r[6:9]) for r in mine) / hz
    except (OSError, ValueError, IndexError):
        return None
    own = os.times()
    return busy, own.user + own.system, time.perf_counter(), len(cpus)


def busy_other(since: Mark | None, now: Mark | None = None) -> float | None:
    """The share (0..1) of the CPUs this process may use that other processes kept busy between
    the marks ``since`` and ``now`` (default: now): their busy time less this process's own, over
    the wall time times the CPUs. None when either mark is None (no /proc/stat)."""
    now = cpu_mark() if now is None else now
    if since is None or now is None or now[2] <= since[2]:
        return None
    other = (now[0] - since[0]) - (now[1] - since[1])
    return min(1.0, max(0.0, other / ((now[2] - since[2]) * since[3])))


def _probe(cands: list[Candidate], opener: Callable[[Candidate], Engine], prepare: Callable[[Candidate], None],
           size: Sequence[int], budget_s: float, precision: str) -> tuple[Choice, float]:
    """Open every candidate, then time them taking turns; the reference (the first) sets the ids
    the others must match. Returns the choice (``about["busy_other"]``: other work during the
    timing) and the seconds spent exporting (outside the budget)."""
    frames = probe_frames(size)
    agree, rejected, opened = {}, {}, []
    t0 = time.perf_counter()
    try:
        export_s = _open_all(cands, opener, prepare, frames, opened, rejected, budget_s)
        for o in opened:
            agree[o.cand.label] = round(agreement(o.ids, opened[0].ids, opened[0].margins), 5)
            why = refusal(agree[o.cand.label], opened[0].margins is not None)
            if why is not None:
                rejected[o.cand.label] = why
        mark = cpu_mark()
        ms = _rounds(opened, budget_s - (time.perf_counter() - t0 - export_s))
        busy = busy_other(mark)
    finally:
        for o in opened:
            close = getattr(o.engine, "close", None)
            if close is not None:
                close()
    pool = [c for c in cands if c.label in ms and c.label not in rejected
            and (precision == "auto" or c.precision == precision or len(cands) == 1)]
    best = min(pool or cands[:1], key=lambda c: ms.get(c.label, float("inf")))
    about = {"busy_other": None if busy is None else round(busy, 2),
             "rule": "sure pixels" if opened and opened[0].margins is not None else "all pixels"}
    return Choice(best.runtime, best.precision, {k: round(v, 2) for k, v in ms.items()}, agree, rejected,
                  about), export_s


def choose(weights: Path, family: str, *, size: Sequence[int], device: str, cuda: bool,
           streams: int | Callable[[Candidate], int], threads: int, precision: str,
           opener: Callable[[Candidate], Engine], note: Callable[[str], None],
           prepare: Callable[[Candidate], None] = lambda c: None, budget_s: float | None = None,
           only: list[Candidate] | None = None, title: str = "auto") -> Choice:
    """auto's runtime and precision for ``weights`` here: the cached choice, else measured now
    and cached. ``prepare`` exports a candidate's artifact into the export cache (outside the
    budget), ``opener`` opens its engine (with its streams). ``streams``: the streams asked for,
    or each candidate's (``--streams 0``: the choice is keyed by the most any of them gets, what a
    caller asking for that number keys). ``note`` gets the one line that says what was chosen,
    with the times."""
    cands = only or candidates(family, cuda, precision)  # only: a forced runtime's fp32 and its default precision
    if callable(streams):
        streams = max((streams(c) for c in cands), default=1)
    pool = [c for c in cands if precision in ("auto", c.precision)]
    if not pool:
        where = "this GPU" if cuda else f"this CPU ({machine.cpu_model()}; flags {' '.join(machine.cpu_flags())})"
        allowed = " or ".join(dict.fromkeys(["auto", *(c.precision for c in cands)]))
        raise RtsegError(f"--precision {precision}: no runtime installed here computes it on {where}; use {allowed}")
    if len(pool) == 1:  # nothing to choose between
        return Choice(pool[0].runtime, pool[0].precision, about={"size": list(size), "single": True})
    budget_s = BUDGET_S if budget_s is None else budget_s  # read now: tests shorten it
    with _lock:
        key = probe_key(weights, size=size, device=device, streams=streams, threads=threads,
                        precision=precision if only is None else "+".join(c.label for c in only))
        hit = cached_choices().get(key)
        if hit is not None and not hit.provisional:
            note(hit.line(cached=True))
            return hit
        t0 = time.perf_counter()
        choice, export_s = _probe(cands, opener, prepare, size, budget_s, precision)
        busy = choice.about["busy_other"]
        # Busy probes in a row (a hit here is a provisional one); a quiet probe, or no /proc/stat, is final.
        busy_probes = (hit.about.get("busy_probes", 0) if hit else 0) + 1 if busy is not None and busy > BUSY else 0
        choice.about = {"weights": weights.name, "size": list(size), "device": device, "streams": streams,
                        "threads": threads, "precision": precision, "machine": machine.cpu_model(), "machine_key": machine.machine_key(),
                        "flags": machine.cpu_flags(), "probe_s": round(time.perf_counter() - t0 - export_s, 2),
                        "export_s": round(export_s, 2), "busy_other": busy, "busy_probes": busy_probes,
                        "rule": choice.about.get("rule"), "title": title,
                        "when": time.strftime("%Y-%m-%d %H:%M:%S")}
        _store(key, choice)
    note(choice.line(cached=False))
    return choice
