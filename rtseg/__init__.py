"""rtseg: real-time video semantic segmentation.

The public API is imported when first used, so ``import rtseg`` (and ``rtseg --help``) stays
quick and does not import PyTorch: only running a network in PyTorch, exporting one or training
does (``create_model`` and friends import it when called)."""
from __future__ import annotations

from rtseg._version import __version__
from rtseg.errors import RtsegError

__all__ = ["RtsegError", "ModelMeta", "create_model", "list_models", "register_model", "load_engine", "stream",
           "batch", "VideoWriter", "Result", "FrameFeed", "__version__"]

# name -> the module that holds it, imported on first use
_LAZY = {"ModelMeta": "rtseg.meta", "create_model": "rtseg.nets", "list_models": "rtseg.nets",
         "register_model": "rtseg.nets", "VideoWriter": "rtseg.streaming", "Result": "rtseg.streaming",
         "FrameFeed": "rtseg.pipeline.opener"}


def load_engine(path=None, *, device: str = "cpu", runtime: str | None = None, **kwargs):
    """Load any artifact as an engine; the file suffix picks the backend (``rtseg.engines.open_engine``,
    which takes the same keywords). ``path`` None: the bundled CamVid weights, found from any working
    directory. ``runtime`` None runs the artifact on its own kind of runtime (PyTorch for a ``.pt``)."""
    from rtseg.engines import open_engine

    return open_engine(path, device=device, runtime=runtime, **kwargs)


def stream(source=None, **options):
    """The pipelined app as an iterator of per-frame results (rtseg/streaming.py)."""
    from rtseg.streaming import stream as _stream

    return _stream(source, **options)


def batch(inputs, output_dir, **options):
    """Segment many videos into ``output_dir``, here or on a Ray cluster (rtseg/fleet: ``rtseg.fleet.batch``)."""
    from rtseg.fleet import batch as _batch

    return _batch(inputs, output_dir, **options)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rtseg' has no attribute {name!r}")
