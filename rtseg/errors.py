"""Errors a user can act on.

Library code raises :class:`RtsegError` for bad input, bad options and missing optional
packages; the CLI prints its message on one line and exits with code 2. Anything else is
an internal failure (exit 1).
"""
from __future__ import annotations

import importlib
import re
from types import ModuleType

__all__ = ["RtsegError", "MissingDependency", "require", "redact"]

# user:password@ (or user@) in a URL, and secret-looking query values: what redact() hides.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@]+)@")
_SECRET_QUERY = re.compile(r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|access_token|auth|key|secret|apikey|api_key)=)"
                           r"(?P<value>[^&#\s]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URL's credentials shown as ``***``: ``rtsp://admin:hunter2@cam/x`` ->
    ``rtsp://***@cam/x``, ``?token=abc`` -> ``?token=***``. Used on every message, title and
    JSON value that may hold a source URL; the real URL only ever opens the stream."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", str(text))
    return _SECRET_QUERY.sub(lambda m: f"{m.group('key')}***", text)


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
