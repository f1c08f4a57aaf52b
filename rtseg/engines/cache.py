"""Artifacts exported once from a PyTorch checkpoint, kept in a cache, so that any runtime can
run a ``.pt`` without an export step the user has to know about (jetson-inference's segNet does
the same with its TensorRT engines).

The cache is ``$RTSEG_CACHE`` or ``~/.cache/rtseg``. An entry's name carries a key made of the
weights' content (SHA-256), the inference size, the runtime and the versions of rtseg, torch
and onnx, so changed weights or a new exporter make a new entry rather than reuse an old one;
the key is also stored inside the artifact's metadata and checked when it is read back. An
entry is written under a temporary name and renamed into place, so a run never reads a file
another run is still writing. A corrupt or stale entry is exported again; an unwritable cache
falls back to a temporary folder, with a one-line note.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

from rtseg.engines.cache_index import prune, touch
from rtseg.engines.runtimes import TABLE
from rtseg.errors import RtsegError
from rtseg.formats import SUFFIXES, artifact_meta

__all__ = ["cache_root", "cache_key", "cached_artifact", "file_digest", "FallbackFolder"]

log = logging.getLogger(__name__)

# What export_onnx writes, in the key: a change to the graph rtseg makes from the same weights and
# versions makes new entries. 2: the normalisation folded into the first convolution (rtseg.export.fold).
GRAPH_FORMAT = 2


class FallbackFolder:
    """Where exports go when the cache cannot be written: a temporary folder, made when first
    needed and reused by the rest of the process while it is there."""

    def __init__(self) -> None:
        self.folder: Path | None = None  # None: none made yet

    def make(self) -> Path:
        """A new temporary folder, the one reused from now on."""
        self.folder = Path(tempfile.mkdtemp(prefix="rtseg-cache-"))
        return self.folder

    def get(self) -> tuple[Path, bool]:
        """(the folder, whether it was made now): the one made before while it is there."""
        if self.folder is not None and self.folder.is_dir():
            return self.folder, False
        return self.make(), True


_fallback = FallbackFolder()  # one per process


def cache_root() -> Path:
    """``$RTSEG_CACHE``, else ``~/.cache/rtseg``."""
    env = os.environ.get("RTSEG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rtseg"


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, read a MiB at a time (the cache keys' "sha256=")."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(weights: Path, runtime: str, size: tuple[int, int], *, fp16: bool = False) -> str:
    """What an entry depends on, as one string: weights' content, size, runtime, precision and
    the versions of the code that makes it."""
    import onnx
    import torch

    from rtseg._version import __version__  # looked up at each call (tests patch it)

    h, w = size
    outputs = "ids" if runtime in TABLE and _family(runtime) == "tensorrt" else "ids+scores"  # ONNX: scores since issue 26
    # The artifact's family, not the runtime: ONNX Runtime and OpenVINO share one ONNX export
    # (auto's probe runs both: one export, not two).
    return (f"sha256={file_digest(weights)};size={h}x{w};artifact={_family(runtime)};precision={'fp16' if fp16 else 'fp32'};"
            f"outputs={outputs};rtseg={__version__};graph={GRAPH_FORMAT};torch={torch.__version__};onnx={onnx.__version__}")


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def _folder(note: Callable[[str], None]) -> Path:
    root = cache_root()
    if _writable(root):
        return root
    folder, new = _fallback.get()
    if new:
        note(f"note: the cache {root} is not writable; exporting into {folder} for this run (set RTSEG_CACHE)")
    return folder


def _family(runtime: str) -> str:
    """The artifact family a .pt is exported to for ``runtime`` (onnx or tensorrt)."""
    return SUFFIXES[TABLE[runtime].cache_suffix]


def _stored_key(path: Path, runtime: str) -> str | None:
    """The key recorded in an entry's metadata; None when the entry cannot be read."""
    try:
        meta = artifact_meta(path, _family(runtime))  # read once: the engine that opens the entry reuses it
    except (RtsegError, OSError, ValueError):
        return None
    return meta.extra.get("cache_key")


def _export(weights: Path, runtime: str, size: tuple[int, int], fp16: bool, key: str, dest: Path) -> None:
    """Write the artifact to a temporary name beside ``dest`` and rename it into place."""
    tmp = dest.with_name(f".{dest.stem}.{os.getpid()}.{os.urandom(4).hex()}.tmp{dest.suffix}")
    try:
        if _family(runtime) == "tensorrt":
            from rtseg.export.tensorrt import export_engine
            from rtseg.formats.plan import sidecar_path

            export_engine(weights, tmp, size=size, fp16=fp16, cache_key=key)
            os.replace(sidecar_path(tmp), sidecar_path(dest))  # the sidecar first: a plan is never there without it
        else:
            from rtseg.export.onnx import export_onnx
            from rtseg.formats.checkpoint import build_from_checkpoint

            model, meta = build_from_checkpoint(weights)
            meta = dataclasses.replace(meta, extra={**meta.extra, "cache_key": key})
            export_onnx(model, meta, tmp, size=size, fp16=fp16)
        os.replace(tmp, dest)
    finally:
        for leftover in (tmp, tmp.with_suffix(".json")):
            leftover.unlink(missing_ok=True)


def cached_artifact(weights: str | Path, runtime: str, size: tuple[int, int], *, fp16: bool = False,
                    note: Callable[[str], None] = log.warning) -> Path:
    """The artifact that runs ``weights`` (an rtseg ``.pt``) on ``runtime`` (onnxruntime,
    openvino: an ONNX file; tensorrt: a plan) at ``size`` (h, w), exported now when the cache
    has no valid one. ``note`` receives the one line said when an export happens (and when the
    cache folder is not writable)."""
    weights = Path(weights)
    suffix = TABLE[runtime].cache_suffix if runtime in TABLE else None
    if suffix is None:
        cached = [r.name for r in TABLE.values() if r.cache_suffix]
        raise RtsegError(f"no cached artifact for runtime {runtime!r}; use one of {', '.join(cached)}")
    key = cache_key(weights, runtime, size, fp16=fp16)
    h, w = size
    name = f"{weights.stem}-{_family(runtime)}-{h}x{w}-{hashlib.sha256(key.encode()).hexdigest()[:16]}{suffix}"
    folder = _folder(note)
    dest = folder / name
    if dest.is_file():
        if _stored_key(dest, runtime) == key:
            log.info("cache hit: %s", dest)
            touch(dest)  # its last use, for pruning
            return dest
        note(f"note: cache entry {dest} is unreadable or stale; exporting it again")
    what = "a TensorRT plan" if _family(runtime) == "tensorrt" else "ONNX"
    note(f"exporting {weights.name} to {what} at {h}x{w} for {runtime} (once; later runs reuse it): {dest}")
    try:
        _export(weights, runtime, size, fp16, key, dest)
    except OSError as exc:  # the folder went away or filled up mid-export: a temporary folder still works
        if folder == _fallback.folder:
            raise RtsegError(f"cannot write the exported model to {folder}: {exc}") from None
        fallback = _fallback.make()
        note(f"note: cannot write to the cache {folder} ({exc.strerror or exc}); exporting into {fallback} "
             "for this run")
        dest = fallback / name
        _export(weights, runtime, size, fp16, key, dest)
        return dest
    prune(folder, keep=dest)  # over RTSEG_CACHE_MAX: the least recently used entries go
    return dest
