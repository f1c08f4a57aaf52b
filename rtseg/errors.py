"""Errors a user can act on.

Library code raises :class:`RtsegError` for bad input, bad options and missing optional
packages; the CLI prints its message on one line and exits with code 2. Anything else is
an internal failure (exit 1).
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["RtsegError", "MissingDependency", "require"]


class RtsegError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class MissingDependency(RtsegError):
    """An optional package needed for the requested feature is not installed."""


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import an optional module or raise a one-line error naming what to install.

    ``extra`` is the rtseg extra that provides it, e.g. ``"trt"`` -> ``pip install 'rtseg[trt]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{feature} needs the Python package '{module.split('.')[0]}', which is not importable "
            f"here ({exc}); install it with: pip install 'rtseg[{extra}]'"
        ) from None
