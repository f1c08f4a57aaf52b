"""A plain-dict registry of networks: ``register_model``, ``create_model``, ``list_models``."""
from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn

from rtseg.errors import RtsegError

__all__ = ["register_model", "create_model", "list_models", "model_options"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name."""
    _MODELS[fn.__name__] = fn
    return fn


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered network, e.g. ``create_model("fastscnn", num_classes=19)``."""
    if name not in _MODELS:
        raise RtsegError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}")
    takes = model_options(name)
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise RtsegError(f"{name} does not take {', '.join(unknown)}; it takes: {', '.join(takes)}")
    return _MODELS[name](**kwargs)


def model_options(name: str) -> list[str]:
    """The keyword options a registered network's builder takes, e.g. ``["num_classes", "aux"]``."""
    return list(inspect.signature(_MODELS[name]).parameters)


def list_models() -> list[str]:
    """Names of the registered networks, sorted."""
    return sorted(_MODELS)
