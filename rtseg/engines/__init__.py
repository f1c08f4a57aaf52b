"""Inference engines behind one interface (:class:`~rtseg.engines.base.Engine`), opened by
:func:`open_engine`; the file suffix and ``runtime=`` pick the backend from the one table of
runtimes (:mod:`rtseg.engines.runtimes`).

==================  =========================================================
``.pt`` ``.pth``    PyTorch checkpoint (:mod:`rtseg.engines.torch_engine`)
``.onnx``           ONNX Runtime or OpenVINO (``runtime=``; :mod:`.ort_engine`,
                    :mod:`.openvino_engine`)
``.plan`` ``.engine`` TensorRT (:mod:`rtseg.engines.trt_engine`)
==================  =========================================================

``runtime=`` runs an artifact elsewhere: a ``.pt`` on ONNX Runtime, OpenVINO or TensorRT is
exported once into a cache (:mod:`rtseg.engines.cache`) and loaded from there. ``auto`` picks
the runtime measured fastest here (:mod:`rtseg.engines.probe`), its choice cached per machine.

Backends are imported when first used, so a missing optional package only matters to the
artifacts that need it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from rtseg.engines.base import Engine, aspect_distortion, aspect_size, check_streams, parse_size
from rtseg.engines.runtimes import (ONNX_RUNTIMES, PRECISIONS, RUNTIMES, SUFFIXES, TABLE, artifact_family,
                                    auto_streams, check_precision, on_cuda, reduced_default, resolve_onnx_runtime,
                                    resolve_runtime, runtime_device, runtime_reason, runtime_streams)
from rtseg.errors import RtsegError
from rtseg.formats import artifact_meta

__all__ = ["Engine", "open_engine", "default_size", "artifact_family", "auto_streams", "runtime_streams", "SUFFIXES",
           "RUNTIMES", "ONNX_RUNTIMES", "PRECISIONS", "TABLE", "resolve_onnx_runtime", "resolve_runtime",
           "runtime_reason"]

log = logging.getLogger(__name__)


def open_engine(weights: str | Path | None = None, *, device: str = "cpu", size: str | Sequence[int] | None = None,
                runtime: str | None = "auto", frame_size: Sequence[int] | None = None, threads: int = 0,
                streams: int = 1, live: bool = False, sequential: bool = False, warmup: int = 0,
                note: Callable[[str], None] | None = None, precision: str = "auto", **backend_kw: Any) -> Engine:
    """Any rtseg artifact as an :class:`Engine`: the one way to open one.

    ``weights``: a ``.pt``/``.pth``, ``.onnx`` or ``.plan``/``.engine`` (None: the bundled CamVid
    weights). ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (OpenVINO also takes its own
    device names). ``runtime``: one of :data:`RUNTIMES`; ``auto`` is the one measured fastest
    here (:mod:`rtseg.engines.probe`: once per weights, size, device and streams on a machine, then
    cached; ``RTSEG_AUTO_PROBE=0`` falls back to :func:`resolve_runtime`'s fixed rule), None the
    artifact's own kind (PyTorch for a ``.pt``, ``auto`` for a ``.onnx``); a ``.pt`` on another
    runtime is exported once into the cache. ``size``: inference (h, w) or ``"HxW"``; default: for
    frames of ``frame_size`` (H, W), a size in their shape (:func:`default_size`), else the
    artifact's own. ``threads``: CPU threads for the network (0 = one per core; TensorRT ignores
    it). ``streams``: frames inferred at once from different threads (``Engine.streams``), on ONNX
    Runtime and OpenVINO; 0: as many as pay on the runtime that opens (:func:`runtime_streams`:
    one for a ``live`` source or a ``sequential`` run), decided once ``auto`` has chosen it (the
    probe times each candidate with its own). ``warmup``: infer calls on a black frame before
    returning (``Engine.warm_up``), so that the first real frame is not the slow one.
    ``note`` (default: a logged warning) gets the one-line notices: an export into the cache, a
    size that stretches the frames by over 5%, auto's choice. ``precision``: one of
    :data:`PRECISIONS` (auto: the probe's or the runtime's own); one the runtime or the CPU cannot
    compute is a one-line error. ``classes``, ``normalize``, ``bgr``, ``input_name``,
    ``output_name``: for an ONNX file without rtseg metadata, which is wrapped once into the cache
    (:mod:`.foreign_cache`); an error for rtseg's own artifacts. Extra keywords go to the backend
    (OpenVINO's ``hint``, ...).
    """
    from rtseg.bundled import DEFAULT_WEIGHTS, bundled

    if not isinstance(streams, int) or streams < 0:
        raise RtsegError(f"--streams must be >= 1, or 0 for as many as pay here; got {streams}")
    if not isinstance(warmup, int) or warmup < 0:
        raise RtsegError(f"warmup must be >= 0 infer calls; got {warmup}")
    say = note or log.warning
    path = Path(weights) if weights is not None else bundled(DEFAULT_WEIGHTS, "CamVid weights")
    # A foreign .onnx (no rtseg metadata) becomes an rtseg artifact first, wrapped once into the
    # cache with --classes/--normalize/...; everything below sees a normal rtseg .onnx.
    from rtseg.engines.foreign_cache import FOREIGN_FLAGS, foreign_or_own

    path = foreign_or_own(path, {k: backend_kw.pop(k) for k in FOREIGN_FLAGS if k in backend_kw}, note=say)
    size = parse_size(size)
    if size is None and frame_size is not None and path.is_file():
        size = default_size(path, frame_size)
    engine = _load(path, device=device, size=size, runtime=runtime, threads=threads, streams=streams, live=live,
                   sequential=sequential, note=say, precision=backend_kw.pop("precision", precision), **backend_kw)
    if frame_size is not None and engine.resize == "stretch" and aspect_distortion(engine.input_size, frame_size) > 0.05:
        (h, w), (fh, fw) = engine.input_size, frame_size
        say(f"warning: inference at {h}x{w} stretches the {fh}x{fw} frames by "
            f"{100 * aspect_distortion(engine.input_size, frame_size):.0f}% (sizes are HxW)")
    engine.warm_up(warmup)
    return engine


def _load(path: Path, *, device: str, size: tuple[int, int] | None, runtime: str | None, threads: int,
          streams: int, live: bool, sequential: bool, note: Callable[[str], None], precision: str = "auto",
          **kw: Any) -> Engine:
    """``path`` on the runtime the table picks (for ``auto``, the one measured fastest here:
    :mod:`rtseg.engines.probe`), exported into the cache first when that runtime does not run the
    file as it is, with ``streams`` (0: :func:`runtime_streams` for that runtime)."""
    if threads < 0:
        raise RtsegError(f"--threads must be >= 0 (0 = one per core); got {threads}")
    precision = check_precision(precision)
    family = artifact_family(path)
    if not path.is_file():
        raise RtsegError(f"engine file not found: {path}")

    def streams_of(name: str) -> int:  # the streams runtime `name` runs with: as asked, or those that pay
        if streams == 0:
            return runtime_streams(name, device, live=live, sequential=sequential)
        return streams if TABLE[name].streams else 1  # auto chose a one-stream runtime: it runs one

    auto = (runtime or "").strip().lower() == "auto"
    if auto and family != "tensorrt" and os.environ.get("RTSEG_AUTO_PROBE", "1") != "0":
        size = size or tuple(artifact_meta(path).input_size)
        choice = _auto_choice(path, family, device=device, size=size, threads=threads, streams=streams,
                              streams_of=streams_of, precision=precision, note=note)
        name, precision = choice.runtime, choice.precision
        streams = streams_of(name)
    else:
        name = resolve_runtime(path, runtime, device) if runtime is not None or family != "pytorch" else "pytorch"
        streams = streams or streams_of(name)  # one given is kept as it is (refused where it does not apply)
        reduced = reduced_default(name, device) if precision == "auto" and runtime is not None else None
        if reduced and family != "tensorrt" and os.environ.get("RTSEG_AUTO_PROBE", "1") != "0":
            # A forced runtime's own default precision (OpenVINO's bf16) passes auto's check, or the run is fp32.
            size = size or tuple(artifact_meta(path).input_size)
            precision = _forced_precision(path, family, name, reduced, device=device, size=size, threads=threads,
                                          streams=streams, note=note)
    if auto and precision == "auto":
        kw = {**dict(TABLE[name].auto_kw), **kw}
    return _open_as(path, name, device=device, size=size, threads=threads, streams=streams, precision=precision,
                    note=note, **kw)


def _auto_choice(path: Path, family: str, *, device: str, size: tuple[int, int], threads: int, streams: int,
                 streams_of: Callable[[str], int], precision: str, note: Callable[[str], None],
                 only: list | None = None, title: str = "auto"):
    """auto's (runtime, precision) for ``path`` here: cached, else measured (rtseg.engines.probe),
    each candidate with the streams it would run with (``streams_of`` its runtime). ``streams``:
    as asked, 0 for those that pay (the probe keys its choice by the most a candidate gets).
    ``only``/``title``: those candidates alone, said under that name (a forced runtime's check)."""
    from rtseg.engines import probe

    cuda = on_cuda(device)
    where = str(runtime_device(device).resolve(lambda: cuda))

    def opener(cand: probe.Candidate) -> Engine:
        return _open_as(path, cand.runtime, device=device, size=size, threads=threads,
                        streams=streams_of(cand.runtime), precision=cand.precision, note=note)

    def prepare(cand: probe.Candidate) -> None:  # the export into the cache, once, outside the probe's clock
        if path.suffix.lower() not in TABLE[cand.runtime].suffixes:
            _exported(path, cand.runtime, device=device, size=size, precision=cand.precision, note=note)

    return probe.choose(path, family, size=size, device=where, cuda=cuda, threads=threads, precision=precision,
                        streams=streams or (lambda cand: streams_of(cand.runtime)), opener=opener,
                        prepare=prepare, note=note, only=only, title=title)


def _forced_precision(path: Path, family: str, name: str, reduced: str, *, device: str, size: tuple[int, int],
                      threads: int, streams: int, note: Callable[[str], None]) -> str:
    """The precision forced runtime ``name`` runs at by default: ``reduced`` when its ids pass auto's
    acceptance rule against the same runtime at fp32 (rtseg.engines.agreement; measured once, cached
    with auto's choices) and it is faster, else fp32, the line saying why."""
    from rtseg.engines.probe import Candidate

    return _auto_choice(path, family, device=device, size=size, threads=threads, streams=streams,
                        streams_of=lambda _: streams, precision="auto", note=note,
                        only=[Candidate(name, "fp32"), Candidate(name, reduced)],
                        title=f"--runtime {name} --precision auto").precision


def _open_as(path: Path, name: str, *, device: str, size: tuple[int, int] | None, threads: int, streams: int,
             precision: str, note: Callable[[str], None], **kw: Any) -> Engine:
    """``path`` opened by runtime ``name`` at ``precision``; a ``.pt`` on another runtime is
    exported into the cache first (fp16 for TensorRT and for an fp16 ONNX Runtime)."""
    row = TABLE[name]
    if check_streams(streams) > 1 and not row.streams:
        takes = " and ".join(r.label for r in TABLE.values() if r.streams)
        raise RtsegError(f"--streams {streams} applies to {takes}; {path.name} runs on {name}")
    if path.suffix.lower() not in row.suffixes:  # a .pt on another runtime (resolve_runtime refused the rest)
        size = size or tuple(artifact_meta(path).input_size)
        path = _exported(path, name, device=device, size=size, precision=precision, note=note)
    options = {"threads": threads} if row.threads else {}
    if row.streams:
        options["streams"] = streams
    if precision != "auto":
        kw["precision"] = precision
    return row.engine_class()(path, device=device, size=size, **options, **kw)


def _exported(path: Path, name: str, *, device: str, size: tuple[int, int], precision: str,
              note: Callable[[str], None]) -> Path:
    """The cached artifact that runs the ``.pt`` ``path`` on ``name`` at ``precision`` (exported
    now if the cache has none; a precision ``name`` would not run is refused first): see
    :meth:`~rtseg.engines.runtimes.Runtime.export_fp16`."""
    from rtseg.engines.cache import cached_artifact

    fp16 = TABLE[name].export_fp16(precision, device)
    return cached_artifact(path, name, size, fp16=fp16, note=note)


def default_size(path: str | Path, frame_size: Sequence[int]) -> tuple[int, int] | None:
    """The inference size for frames of ``frame_size`` (H, W) when none is given: the artifact's
    pixel count in the frame's shape, for artifacts that take any size (a ``.pt``, a dynamic
    ``.onnx``); None (the artifact's own size) for fixed-size ones."""
    path = Path(path)
    family = SUFFIXES.get(path.suffix.lower())
    if family not in ("pytorch", "onnx"):
        return None
    meta = artifact_meta(path, family)  # kept: the engine opened next reads it again for nothing
    if family == "onnx" and not meta.extra.get("export", {}).get("dynamic"):
        return None
    return aspect_size(meta.input_size, frame_size)
