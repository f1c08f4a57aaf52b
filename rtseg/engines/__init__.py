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
                                    auto_streams, check_precision, resolve_onnx_runtime, resolve_runtime,
                                    runtime_reason)
from rtseg.errors import RtsegError

__all__ = ["Engine", "open_engine", "default_size", "artifact_family", "auto_streams", "SUFFIXES", "RUNTIMES",
           "ONNX_RUNTIMES", "PRECISIONS", "TABLE", "resolve_onnx_runtime", "resolve_runtime", "runtime_reason"]

log = logging.getLogger(__name__)


def open_engine(weights: str | Path | None = None, *, device: str = "cpu", size: str | Sequence[int] | None = None,
                runtime: str | None = "auto", frame_size: Sequence[int] | None = None, threads: int = 0,
                streams: int = 1, note: Callable[[str], None] | None = None, precision: str = "auto",
                **backend_kw: Any) -> Engine:
    """Any rtseg artifact as an :class:`Engine`: the one way to open one.

    ``weights``: a ``.pt``/``.pth``, ``.onnx`` or ``.plan``/``.engine`` (None: the bundled CamVid
    weights). ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (OpenVINO also takes its own
    device names). ``runtime``: one of :data:`RUNTIMES`; ``auto`` is the one measured fastest
    here (:mod:`rtseg.engines.probe`: once per weights, size, device and streams on a machine, then
    cached; ``RTSEG_AUTO_PROBE=0`` falls back to :func:`resolve_runtime`'s fixed rule), None the artifact's own kind (PyTorch for a ``.pt``, ``auto`` for a
    ``.onnx``); a ``.pt`` on another runtime is exported once into the cache. ``size``: inference
    (h, w) or ``"HxW"``; default: for frames of ``frame_size`` (H, W), a size in their shape
    (:func:`default_size`), else the artifact's own. ``threads``: CPU threads for the network
    (0 = one per core; TensorRT ignores it). ``streams``: frames inferred at once from different
    threads (``Engine.streams``), on ONNX Runtime and OpenVINO. ``note`` (default: a logged
    warning) gets the one-line notices: an export into the cache, a size that stretches the frames
    by over 5%, auto's choice. ``precision``: one of :data:`PRECISIONS` (auto: the probe's or the
    runtime's own); one the runtime or the CPU cannot compute is a one-line error. ``classes``, ``normalize``, ``bgr``, ``input_name``, ``output_name``: for an ONNX file
    without rtseg metadata, which is wrapped once into the cache (:mod:`.foreign_cache`); an error
    for rtseg's own artifacts. Extra keywords go to the backend (OpenVINO's ``precision``, ...).
    """
    from rtseg.bundled import DEFAULT_WEIGHTS, bundled

    say = note or log.warning
    path = Path(weights) if weights is not None else bundled(DEFAULT_WEIGHTS, "CamVid weights")
    # A foreign .onnx (no rtseg metadata) becomes an rtseg artifact first, wrapped once into the
    # cache with --classes/--normalize/...; everything below sees a normal rtseg .onnx.
    from rtseg.engines.foreign_cache import FOREIGN_FLAGS, foreign_or_own

    path = foreign_or_own(path, {k: backend_kw.pop(k) for k in FOREIGN_FLAGS if k in backend_kw}, note=say)
    size = parse_size(size)
    if size is None and frame_size is not None and path.is_file():
        size = default_size(path, frame_size)
    engine = _load(path, device=device, size=size, runtime=runtime, threads=threads, streams=streams, note=say,
                   precision=backend_kw.pop("precision", precision), **backend_kw)
    if frame_size is not None and aspect_distortion(engine.input_size, frame_size) > 0.05:
        (h, w), (fh, fw) = engine.input_size, frame_size
        say(f"warning: inference at {h}x{w} stretches the {fh}x{fw} frames by "
            f"{100 * aspect_distortion(engine.input_size, frame_size):.0f}% (sizes are HxW)")
    return engine


def _load(path: Path, *, device: str, size: tuple[int, int] | None, runtime: str | None, threads: int,
          streams: int, note: Callable[[str], None], precision: str = "auto", **kw: Any) -> Engine:
    """``path`` on the runtime the table picks (for ``auto``, the one measured fastest here:
    :mod:`rtseg.engines.probe`), exported into the cache first when that runtime does not run the
    file as it is."""
    if threads < 0:
        raise RtsegError(f"--threads must be >= 0 (0 = one per core); got {threads}")
    precision = check_precision(precision)
    family = artifact_family(path)
    if not path.is_file():
        raise RtsegError(f"engine file not found: {path}")
    auto = (runtime or "").strip().lower() == "auto"
    if auto and family != "tensorrt" and os.environ.get("RTSEG_AUTO_PROBE", "1") != "0":
        size = size or _own_size(path, family)
        choice = _auto_choice(path, family, device=device, size=size, threads=threads, streams=streams,
                              precision=precision, note=note)
        name, precision = choice.runtime, choice.precision
        streams = streams if TABLE[name].streams else 1  # auto chose a one-stream runtime: it runs one
    else:
        name = resolve_runtime(path, runtime, device) if runtime is not None or family != "pytorch" else "pytorch"
    if auto and precision == "auto":
        kw = {**dict(TABLE[name].auto_kw), **kw}
    return _open_as(path, name, device=device, size=size, threads=threads, streams=streams, precision=precision,
                    note=note, **kw)


def _own_size(path: Path, family: str) -> tuple[int, int]:
    """The artifact's own inference size (its metadata's)."""
    if family == "pytorch":
        from rtseg.formats.checkpoint import load_checkpoint

        return tuple(load_checkpoint(path)["meta"].input_size)
    from rtseg.formats.onnx_meta import read_onnx_meta

    return tuple(read_onnx_meta(path).input_size)


def _auto_choice(path: Path, family: str, *, device: str, size: tuple[int, int], threads: int, streams: int,
                 precision: str, note: Callable[[str], None]):
    """auto's (runtime, precision) for ``path`` here: cached, else measured (rtseg.engines.probe)."""
    from rtseg.engines import probe
    from rtseg.engines.runtimes import _cuda, _device

    cuda = _cuda(device)
    where = str(_device(device).resolve(lambda: cuda))

    def opener(cand: probe.Candidate) -> Engine:
        k = streams if TABLE[cand.runtime].streams else 1
        return _open_as(path, cand.runtime, device=device, size=size, threads=threads, streams=k,
                        precision=cand.precision, note=note)

    def prepare(cand: probe.Candidate) -> None:  # the export into the cache, once, outside the probe's clock
        if path.suffix.lower() not in TABLE[cand.runtime].suffixes:
            _exported(path, cand.runtime, size=size, precision=cand.precision, note=note)

    return probe.choose(path, family, size=size, device=where, cuda=cuda, streams=streams, threads=threads,
                        precision=precision, opener=opener, prepare=prepare, note=note)


def _open_as(path: Path, name: str, *, device: str, size: tuple[int, int] | None, threads: int, streams: int,
             precision: str, note: Callable[[str], None], **kw: Any) -> Engine:
    """``path`` opened by runtime ``name`` at ``precision``; a ``.pt`` on another runtime is
    exported into the cache first (fp16 for TensorRT and for an fp16 ONNX Runtime)."""
    row = TABLE[name]
    if check_streams(streams) > 1 and not row.streams:
        takes = " and ".join(r.label for r in TABLE.values() if r.streams)
        raise RtsegError(f"--streams {streams} applies to {takes}; {path.name} runs on {name}")
    if path.suffix.lower() not in row.suffixes:  # a .pt on another runtime (resolve_runtime refused the rest)
        from rtseg.formats.checkpoint import load_checkpoint

        size = size or tuple(load_checkpoint(path)["meta"].input_size)
        if name == "onnxruntime":  # its precision errors before an export that would be for nothing
            from rtseg.engines.ort_engine import _precision
            from rtseg.engines.runtimes import _cuda

            _precision(precision, precision if precision != "auto" else "fp32", "cuda" if _cuda(device) else "cpu")
        path = _exported(path, name, size=size, precision=precision, note=note)
    options = {"threads": threads} if row.threads else {}
    if row.streams:
        options["streams"] = streams
    if precision != "auto":
        kw["precision"] = precision
    return row.engine_class()(path, device=device, size=size, **options, **kw)


def _exported(path: Path, name: str, *, size: tuple[int, int], precision: str, note: Callable[[str], None]) -> Path:
    """The cached artifact that runs the ``.pt`` ``path`` on ``name`` at ``precision`` (exported
    now if the cache has none): OpenVINO takes its precision as a hint on the fp32 graph; ONNX
    Runtime and TensorRT run an fp16 export for fp16 (TensorRT's auto)."""
    from rtseg.engines.cache import cached_artifact

    row = TABLE[name]
    if precision == "bf16" and name != "openvino":
        raise RtsegError(f"--precision bf16: rtseg exports fp32 or fp16 for {row.label}; use fp32, fp16 or auto")
    fp16 = row.cache_fp16 if precision == "auto" else precision == "fp16" and name != "openvino"
    return cached_artifact(path, name, size, fp16=fp16, note=note)


def default_size(path: str | Path, frame_size: Sequence[int]) -> tuple[int, int] | None:
    """The inference size for frames of ``frame_size`` (H, W) when none is given: the artifact's
    pixel count in the frame's shape, for artifacts that take any size (a ``.pt``, a dynamic
    ``.onnx``); None (the artifact's own size) for fixed-size ones."""
    path = Path(path)
    family = SUFFIXES.get(path.suffix.lower())
    if family == "pytorch":
        from rtseg.formats.checkpoint import load_checkpoint

        meta = load_checkpoint(path)["meta"]
    elif family == "onnx":
        from rtseg.formats.onnx_meta import read_onnx_meta

        meta = read_onnx_meta(path)
        if not meta.extra.get("export", {}).get("dynamic"):
            return None
    else:
        return None
    return aspect_size(meta.input_size, frame_size)
