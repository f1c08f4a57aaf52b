"""Foreign ONNX files (no rtseg metadata) wrapped once into the export cache, so ``--engine
model.onnx`` runs a file from torch.onnx, mmdeploy or jetson-inference like rtseg's own exports.

An entry's name carries a key made of the file's content (SHA-256), the flags that shape the
wrapped graph (classes, normalisation, BGR, input and output names, size) and the versions of
rtseg and onnx; the key is also stored in the entry's metadata and checked when it is read back.
Entries are written under a temporary name and renamed into place (rtseg.export.foreign).
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from rtseg.engines.cache_index import prune, touch
from rtseg.engines.cache import cache_root, file_digest  # the same content hash as the export cache
from rtseg.errors import RtsegError
from rtseg.formats import artifact_meta

__all__ = ["FOREIGN_FLAGS", "is_foreign_onnx", "is_foreign_ir", "foreign_key", "wrapped_artifact", "foreign_or_own"]

# The engine keywords (and CLI flags, as --classes ...) that say what a foreign graph cannot.
FOREIGN_FLAGS = ("classes", "colors", "normalize", "bgr", "resize", "input_name", "output_name")

log = logging.getLogger(__name__)


def is_foreign_onnx(path: str | Path) -> bool:
    """True for a readable ``.onnx`` file without rtseg metadata."""
    path = Path(path)
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return False
    try:
        artifact_meta(path, "onnx")  # an rtseg file's read is kept for the engine that opens it
    except RtsegError as exc:
        return "without rtseg metadata" in str(exc)
    return False


def is_foreign_ir(path: str | Path) -> bool:
    """True for a readable OpenVINO IR ``.xml`` without rtseg metadata."""
    from rtseg.formats.ir_meta import META_KEY, ir_rt_info

    try:
        return ir_rt_info(path).find(META_KEY) is None
    except RtsegError:
        return False


WRAP_FORMAT = 6  # what wrap_foreign writes (older entries are wrapped again); 2: the scores output; 3: ids enlarged
# to the input; 4: the scores before a final ArgMax; 5: the normalisation folded into the first conv; 6: a
# graph's own 1/8 scores as the scores output


def _canonical(value: str | Path | None) -> str | None:
    """A --classes/--colors value as what it names: ``file:<sha256>`` for a file, a preset lower-cased."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):  # names read from a tool's own files
        return "names:" + json.dumps(list(value))
    path = Path(str(value)).expanduser()
    if path.is_file():
        return f"file:{file_digest(path)}"
    return str(value).strip().lower()


def foreign_key(path: Path, flags: dict) -> str:
    """What an entry depends on, as one string: the file's content, the flags, the versions (onnx's
    from its distribution: importing it would cost a cache hit 0.6 s)."""
    from importlib.metadata import version

    from rtseg._version import __version__

    return (f"sha256={file_digest(path)};flags={json.dumps(flags, sort_keys=True)};rtseg={__version__};"
            f"onnx={version('onnx')};wrap={WRAP_FORMAT}")


def _stored_key(path: Path) -> str | None:
    try:
        return artifact_meta(path).extra.get("cache_key")  # an .onnx, or an OpenVINO IR's .xml
    except (RtsegError, OSError, ValueError):
        return None


def wrapped_artifact(path: str | Path, *, classes: str | None = None, colors: str | None = None,
                     normalize: str | None = None,
                     bgr: bool = False, resize: str | None = None, input_name: str | None = None,
                     output_name: str | None = None, size: Sequence[int] | None = None, resample: str | None = None,
                     read_from: str | None = None, note: Callable[[str], None] = log.warning) -> Path:
    """The rtseg artifact that runs the foreign ONNX file ``path`` with these flags (see
    :func:`rtseg.export.foreign.wrap_foreign`), wrapped now when the cache has no valid one.
    ``note`` gets the one-line notices: the wrap itself, a class-count guess, an unwritable cache.
    ``read_from``: what the tool's own files set, and where from (kept in the metadata as
    ``tool_files`` for ``--json``)."""
    from rtseg.export.foreign import wrap_foreign

    path = Path(path)
    # The flags as what they mean, not as they were spelled: a preset in any case, a file by its
    # content (wherever it lies, however its path is written), the normalisation's default named.
    flags = {"classes": _canonical(classes), "normalize": (normalize or "").strip().lower() or None,
             "bgr": bool(bgr), "input_name": input_name, "output_name": output_name,
             "size": list(size) if size is not None else None}
    if colors is not None:  # absent from the key otherwise: entries made before --colors stay valid
        flags["colors"] = _canonical(colors)
    if resize not in (None, "stretch"):  # likewise: stretch is what entries made before --resize do
        flags["resize"] = resize
    if resample is not None:  # the Pillow filter its tool resizes with (Hugging Face's resample), no flag
        flags["resample"] = resample
    key = foreign_key(path, flags)
    name = f"{path.stem}-foreign-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"
    folder = cache_root() / "foreign"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        folder = Path(tempfile.mkdtemp(prefix="rtseg-cache-"))
        note(f"note: the cache {cache_root()} is not writable ({exc.strerror or exc}); wrapping into {folder} "
             "for this run (set RTSEG_CACHE)")
    dest = folder / name
    ir = path.suffix.lower() == ".xml"  # an OpenVINO IR from another tool: wrapped as an IR
    dest = dest.with_suffix(".xml") if ir else dest
    if dest.is_file():
        if _stored_key(dest) == key:
            log.info("cache hit: %s", dest)
            touch(dest)  # its last use, for pruning
            return dest
        note(f"note: cache entry {dest} is unreadable or stale; wrapping it again")
    extra = {"cache_key": key, **({"tool_files": read_from} if read_from else {}),
             **({"resample": resample} if resample else {})}
    if ir:
        from rtseg.export.foreign_ir import wrap_openvino_ir

        wrapped = wrap_openvino_ir(path, dest, classes=classes, colors=colors, normalize=normalize, bgr=bgr,
                                   resize=resize, size=size, note=note, extra=extra)
    else:
        wrapped = wrap_foreign(path, dest, classes=classes, colors=colors, normalize=normalize, bgr=bgr,
                               resize=resize, input_name=input_name, output_name=output_name, size=size, note=note,
                               extra=extra)
    prune(cache_root(), keep=wrapped)  # over RTSEG_CACHE_MAX: the least recently used entries go
    # Said once it worked, so a file refused (not a segmentation model, ...) is the error line alone.
    note(f"wrapped {path.name} ({'an OpenVINO IR' if ir else 'an ONNX file'} without rtseg metadata) into an rtseg artifact "
         f"(once; later runs reuse it): {wrapped}")
    return wrapped


def foreign_or_own(path: Path, flags: dict, *, note: Callable[[str], None] = log.warning) -> Path:
    """What the engine opens for ``path``: the wrapped artifact of a foreign ONNX file or OpenVINO
    IR (a ``.xml``, or a folder holding one: ultralytics' ``*_openvino_model/``), made with
    ``flags`` (the :data:`FOREIGN_FLAGS` given) over what the tool's own files say, else ``path``
    itself. The flags given for an rtseg
    artifact are an error, not a note: its classes and preprocessing are in its metadata, and
    ignoring, say, --normalize unit would leave a user believing it applied (docs/architecture.md)."""
    given = {k: v for k, v in flags.items() if v not in (None, False)}
    if path.is_dir() or path.suffix.lower() == ".xml":  # an OpenVINO IR (ultralytics: a *_openvino_model/ folder)
        from rtseg.export.foreign_ir import ir_file

        found = ir_file(path)
        if found is None and path.is_dir():
            raise RtsegError(f"--engine {path}: a folder, with no OpenVINO model in it (an .xml beside its .bin, as "
                             "ultralytics' *_openvino_model/ holds); give a model file")
        path = found or path
    if not path.is_file():
        return path  # the engine says "not found"
    if is_foreign_onnx(path) or (path.suffix.lower() == ".xml" and is_foreign_ir(path)):
        from rtseg.export.foreign_tools import tool_defaults

        found, said = tool_defaults(path, given)  # the files of the tool that made it (ultralytics, Hugging Face, ...)
        if said:
            note(f"note: {path.name}: {said} (flags override it)")
        return wrapped_artifact(path, note=note, read_from=said, **{**found, **given})
    if given:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise RtsegError(f"{names} apply to ONNX files without rtseg metadata; {path.name} is an rtseg artifact "
                         "with its own classes and preprocessing: drop them")
    return path
