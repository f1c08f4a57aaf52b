"""rtseg: real-time video semantic segmentation."""
from __future__ import annotations

__version__ = "0.1.0"

from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta
from rtseg.nets import create_model, list_models, register_model

__all__ = ["RtsegError", "ModelMeta", "create_model", "list_models", "register_model", "load_engine", "stream",
           "VideoWriter", "Result", "__version__"]


def load_engine(path=None, *, device: str = "cpu", **kwargs):
    """Load any artifact as an engine; the file suffix picks the backend (see ``rtseg.engines``).
    ``path`` None: the bundled CamVid weights, found from any working directory."""
    from rtseg.engines import load_engine as _load

    if path is None:
        from rtseg.bundled import DEFAULT_WEIGHTS, bundled

        path = bundled(DEFAULT_WEIGHTS, "CamVid weights")
    return _load(path, device=device, **kwargs)


def stream(source=None, **kwargs):
    """The pipelined app as an iterator of per-frame results (rtseg/streaming.py)."""
    from rtseg.streaming import stream as _stream

    return _stream(source, **kwargs)


def __getattr__(name: str):
    if name in ("VideoWriter", "Result"):  # imported when first used: they pull in the video stack
        import rtseg.streaming as _module

        return getattr(_module, name)
    raise AttributeError(f"module 'rtseg' has no attribute {name!r}")
