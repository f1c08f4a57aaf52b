"""``--device``: the one parser of ``auto``, ``cpu``, ``cuda`` and ``cuda:N``.

Every runtime, the training loop and the Python API read a device string through
:func:`parse_device`, then decide what ``auto`` means for themselves with :meth:`Device.resolve`
(PyTorch: a GPU torch can see; ONNX Runtime: its CUDA provider). Only the syntax lives here;
whether a GPU is usable is asked of the runtime that would use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from rtseg.errors import RtsegError

__all__ = ["Device", "parse_device", "DEVICE_CHOICES"]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


@dataclass(frozen=True)
class Device:
    """A parsed ``--device``: ``kind`` is auto, cpu, cuda or (OpenVINO only) one of its own names."""

    kind: str  # auto | cpu | cuda | a runtime's own device name (OpenVINO: GPU, NPU, ...)
    index: int = 0  # the N of cuda:N (0 for plain cuda)
    text: str = ""  # as the user wrote it, for error messages

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def is_auto(self) -> bool:
        return self.kind == "auto"

    def resolve(self, cuda_available: Callable[[], bool]) -> "Device":
        """``auto`` -> ``cuda`` when ``cuda_available()``, else ``cpu``; other devices unchanged.
        ``cuda_available`` is called only for ``auto`` (it may import a heavy package)."""
        if not self.is_auto:
            return self
        return Device("cuda", 0, self.text) if cuda_available() else Device("cpu", 0, self.text)

    def __str__(self) -> str:
        if self.kind == "cuda":
            return f"cuda:{self.index}"
        return self.kind


def parse_device(text: str | None, *, default: str = "auto", others: Sequence[str] = ()) -> Device:
    """'auto', 'cpu', 'cuda', 'cuda:N' (any case, spaces ignored; None = ``default``) -> a
    :class:`Device`; ``others`` are extra names a runtime accepts as they are (OpenVINO's device
    names). Anything else is a one-line error naming the value and what is allowed."""
    raw = default if text is None else str(text)
    value = raw.strip().lower()
    if value in ("auto", "cpu"):
        return Device(value, 0, raw)
    if value == "cuda":
        return Device("cuda", 0, raw)
    if value.startswith("cuda:") and value[5:].isdigit():
        return Device("cuda", int(value[5:]), raw)
    for name in others:
        if raw.strip().upper() == name.upper() or raw.strip().upper().startswith(name.upper() + "."):
            return Device(raw.strip().upper(), 0, raw)
    extra = f", or one of {', '.join(others)}" if others else ""
    raise RtsegError(f"--device {raw!r} is not allowed; use {DEVICE_CHOICES}{extra}")
