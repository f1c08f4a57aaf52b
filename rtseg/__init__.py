"""rtseg: real-time video semantic segmentation."""
from __future__ import annotations

from rtseg._version import __version__
from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta
from rtseg.nets import create_model, list_models, register_model

__all__ = ["RtsegError", "ModelMeta", "create_model", "list_models", "register_model", "load_engine", "stream",
           "VideoWriter", "Result", "batch", "__version__"]


def load_engine(path=None, *, device: str = "cpu", runtime: str | None = None, **kwargs):
    """Load any artifact as an engine; the file suffix picks the backend (``rtseg.engines.open_engine``,
    which takes the same keywords). ``path`` None: the bundled CamVid weights, found from any working
    directory. ``runtime`` None runs the artifact on its own kind of runtime (PyTorch for a ``.pt``)."""
    from rtseg.engines import open_engine

    return open_engine(path, device=device, runtime=runtime, **kwargs)


def stream(source=None, **kwargs):
    """The pipelined app as an iterator of per-frame results (rtseg/streaming.py)."""
    from rtseg.streaming import stream as _stream

    return _stream(source, **kwargs)


def __getattr__(name: str):
    if name in ("VideoWriter", "Result"):  # imported when first used: they pull in the video stack
        import rtseg.streaming as _module

        return getattr(_module, name)
    if name == "batch":  # rtseg.batch(inputs, output_dir, ...): the package is callable (run_batch)
        import rtseg.batch as _batch

        return _batch
    raise AttributeError(f"module 'rtseg' has no attribute {name!r}")
