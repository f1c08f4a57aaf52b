"""rtseg's checkpoint format: a state dict plus :class:`ModelMeta`, loadable with
``torch.load(weights_only=True)`` so a weights file cannot run code."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta
from rtseg.nets import create_model

__all__ = ["save_checkpoint", "load_checkpoint", "build_from_checkpoint", "FORMAT"]

FORMAT = "rtseg-checkpoint/1"


def save_checkpoint(path: str | Path, model: nn.Module, meta: ModelMeta, **train_state: Any) -> Path:
    """Write ``model``'s weights and ``meta``; ``train_state`` (epoch, optimiser state, ...)
    must hold only tensors, numbers, strings and containers of them. Written to a temporary
    file and renamed, so an interrupted save never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {"format": FORMAT, "meta": meta.to_dict(), "state_dict": net.state_dict(), "train": train_state}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint: ``{"meta": ModelMeta, "state_dict": ..., "train": {...}}``.
    Raises :class:`RtsegError` with one line for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise RtsegError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a damaged file can make the unpickler raise anything (KeyError, IndexError, ...)
        raise RtsegError(f"{path} cannot be loaded: it is {_what_is_wrong(path, exc)}.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RtsegError(
            f"{path} is a PyTorch file but not an rtseg checkpoint (no '{FORMAT}' format tag); "
            "make one with 'rtseg train' or rtseg.formats.checkpoint.save_checkpoint"
        )
    return {"meta": ModelMeta.from_dict(payload["meta"]), "state_dict": payload["state_dict"],
            "train": payload.get("train", {})}


def _what_is_wrong(path: Path, exc: BaseException) -> str:
    """Why ``torch.load`` refused ``path``, as the end of one sentence (PyTorch's own messages run
    to several lines and lose their point when cut)."""
    try:
        head = path.read_bytes()[:4096]
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if not head:
        return "empty"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if not any(name.endswith("data.pkl") for name in zf.namelist()):
                return "a zip archive, but not a PyTorch checkpoint"
        if any(word in str(exc) for word in ("weights_only", "GLOBAL", "Unsupported")):  # the safe unpickler refused
            return ("a PyTorch file holding Python objects besides tensors, which rtseg does not load "
                    "(loading them could run code)")
        return "a damaged PyTorch checkpoint"
    if head.startswith(b"PK"):
        return "a truncated or damaged PyTorch checkpoint (its zip archive is incomplete)"
    try:
        head.decode("utf-8")
        return "a text file, not a PyTorch checkpoint"
    except UnicodeDecodeError:
        pass
    if head[:1] == b"\x80":  # a bare pickle: PyTorch's format before 1.6, or something else pickled
        return "an old-style or damaged PyTorch file that cannot be read safely"
    return "not a PyTorch checkpoint"


def _args(meta: ModelMeta) -> str:
    return " (" + ", ".join(f"{k}={v}" for k, v in meta.model_args.items()) + ")" if meta.model_args else ""


def build_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelMeta]:
    """The network of a checkpoint, weights loaded, in eval mode (training-only heads dropped)."""
    ckpt = load_checkpoint(path, map_location)
    meta: ModelMeta = ckpt["meta"]
    model = create_model(meta.model, num_classes=meta.num_classes, **meta.model_args)
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("aux_heads.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RtsegError(f"{path}: weights do not fit {meta.model}{_args(meta)} with {meta.num_classes} classes "
                         f"({str(exc).splitlines()[0]})") from None
    return model.eval(), meta
