"""rtseg: real-time video semantic segmentation."""
from __future__ import annotations

__version__ = "0.1.0"

from rtseg.errors import RtsegError
from rtseg.meta import ModelMeta
from rtseg.nets import create_model, list_models, register_model

__all__ = ["RtsegError", "ModelMeta", "create_model", "list_models", "register_model", "load_engine", "__version__"]


def load_engine(path, *, device: str = "cpu", **kwargs):
    """Load any artifact as an engine; the file suffix picks the backend (see ``rtseg.engines``)."""
    from rtseg.engines import load_engine as _load

    return _load(path, device=device, **kwargs)
