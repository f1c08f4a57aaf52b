"""What the cache holds, and keeping it in bounds: ``rtseg cache`` lists the entries (exports of
``.pt`` files, wrapped foreign ONNX files) with their model, kind, size and when they were last
used; ``rtseg cache clear [--older-than DAYS]`` removes them; and after each new entry the least
recently used ones go while the cache is over ``RTSEG_CACHE_MAX`` (default 4 GB).

An entry's modification time is its last use: a cache hit touches it (:func:`touch`)."""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from rtseg.errors import RtsegError

__all__ = ["Entry", "entries", "touch", "clear", "prune", "max_bytes", "DEFAULT_MAX", "ARTIFACT_SUFFIXES"]

log = logging.getLogger(__name__)

DEFAULT_MAX = 4 * 1024**3  # bytes: a few GB (a 131 MB foreign model, many exports at many sizes)
ARTIFACT_SUFFIXES = (".onnx", ".plan", ".engine", ".xml")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True)
class Entry:
    path: Path
    kind: str  # "export" (a .pt made runnable elsewhere) or "foreign" (an ONNX file from another tool, wrapped)
    model: str  # what it was made from (the weights' or the foreign file's name)
    artifact: str  # onnx or tensorrt
    precision: str  # fp32 or fp16 (the file's own; a runtime may compute in bf16)
    size_hw: str  # the inference size it was made for, HxW ("dynamic" when any)
    bytes: int  # with a plan's sidecar
    last_used: float  # time.time() of the last hit (the file's modification time)


def max_bytes() -> int:
    """``RTSEG_CACHE_MAX`` (bytes, or with a unit: 500M, 4G; 0: no limit), else :data:`DEFAULT_MAX`."""
    text = os.environ.get("RTSEG_CACHE_MAX", "").strip().lower().removesuffix("b").removesuffix("i")
    if not text:
        return DEFAULT_MAX
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)", text)
    if not m:
        raise RtsegError(f"RTSEG_CACHE_MAX={os.environ['RTSEG_CACHE_MAX']!r}: give bytes or a size like 500M or 4G")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def touch(path: Path) -> None:
    """Mark ``path`` as used now (a cache hit), so pruning keeps it."""
    try:
        os.utime(path)
    except OSError:  # a read-only cache still serves its entries
        pass


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _describe(path: Path) -> Entry:
    from rtseg.formats import SUFFIXES, artifact_meta

    family = SUFFIXES.get(path.suffix.lower(), "onnx")
    st = path.stat()
    beside = _sidecar(path) if family == "tensorrt" else path.with_suffix(".bin") if family == "openvino" else None
    total = st.st_size + (beside.stat().st_size if beside is not None and beside.is_file() else 0)
    try:
        meta = artifact_meta(path, family)
        key, extra = meta.extra.get("cache_key", ""), meta.extra
        foreign = meta.model.startswith("foreign:")
        model = meta.model.split(":", 1)[1] if foreign else (path.name.split(f"-{family}-")[0])
        dynamic = extra.get("export", {}).get("dynamic")
        size = "dynamic" if dynamic else "x".join(map(str, meta.input_size))
        precision = "fp16" if "precision=fp16" in key or extra.get("export", {}).get("fp16") else "fp32"
        return Entry(path, "foreign" if foreign else "export", model, family, precision, size, total, st.st_mtime)
    except (RtsegError, OSError, ValueError):
        return Entry(path, "unreadable", path.name, family, "?", "?", total, st.st_mtime)


def entries(root: Path) -> list[Entry]:
    """Every artifact under ``root`` (exports at the top, wrapped files in ``foreign/``), newest use first."""
    found = []
    for folder in (root, root / "foreign"):
        if folder.is_dir():
            found += [_describe(p) for p in folder.iterdir()
                      if p.is_file() and p.suffix.lower() in ARTIFACT_SUFFIXES and not p.name.startswith(".")]
    return sorted(found, key=lambda e: -e.last_used)


def _remove(entry: Entry) -> None:
    entry.path.unlink(missing_ok=True)
    if entry.artifact == "tensorrt":
        _sidecar(entry.path).unlink(missing_ok=True)
    if entry.artifact == "openvino":  # an IR's weights
        entry.path.with_suffix(".bin").unlink(missing_ok=True)


def clear(root: Path, older_than_days: float | None = None) -> list[Entry]:
    """Remove the entries unused for ``older_than_days`` (None: all, and auto's measured choices,
    so the next run measures again); returns what went."""
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    gone = [e for e in entries(root) if cutoff is None or e.last_used < cutoff]
    for e in gone:
        _remove(e)
    if older_than_days is None:
        (root / "auto_runtime.json").unlink(missing_ok=True)
    return gone


def prune(root: Path, keep: Path, limit: int | None = None) -> list[Entry]:
    """Remove the least recently used entries while the cache is over ``limit`` bytes (None:
    :func:`max_bytes`; 0: no limit), never ``keep`` (the entry just made)."""
    limit = max_bytes() if limit is None else limit
    if not limit:
        return []
    listed = entries(root)
    total = sum(e.bytes for e in listed)
    gone = []
    for e in reversed(listed):  # the least recently used first
        if total <= limit:
            break
        if e.path == keep:
            continue
        _remove(e)
        total -= e.bytes
        gone.append(e)
    if gone:
        log.info("cache over %d bytes: removed %d least recently used entries", limit, len(gone))
    return gone
