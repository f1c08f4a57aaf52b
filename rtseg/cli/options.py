"""The run's flags, declared once: made from the fields of :class:`rtseg.pipeline.spec.RunSpec`.

A command takes a run's options with ``@run_options("source", "engine", ...)``: the fields of
those parts of the spec that have a flag become its Typer options (their default, flag and help
are the field's), and the command gets the values as one ``options`` dict, keyed by field name,
for :meth:`RunSpec.from_options`. Adding a field to the spec adds the flag to every command that
takes its part, and the keyword to ``rtseg.stream`` and ``rtseg.batch``.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import fields
from typing import Any, Callable

import typer

from rtseg.pipeline.spec import GROUPS

__all__ = ["run_options"]


def _field_params(parts: tuple[str, ...], skip: set[str], help: dict[str, str]) -> list[inspect.Parameter]:
    params = []
    for part in parts:
        group, _, only = part.partition(":")
        names = set(only.split(",")) if only else None
        cls = GROUPS[group]
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            flags = f.metadata.get("flags")
            if not flags or f.name in skip or (names is not None and f.name not in names):
                continue
            kind = f.metadata.get("cli") or hints[f.name]
            text = help.get(f.name, f.metadata["help"])
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                            default=typer.Option(f.default, *flags, help=text)))
    return params


def run_options(*parts: str, skip: tuple[str, ...] = (), help: dict[str, str] | None = None) -> Callable:
    """Add the flags of the spec's ``parts`` to a command: ``"engine"`` (all of a part's flags) or
    ``"outputs:view,alpha"`` (some); ``skip`` leaves fields out, ``help`` says more for this
    command. The command's own parameters come first in its help; it is called with the run's
    values as ``options`` (a dict: field name -> value)."""
    def decorate(command: Callable) -> Callable:
        own = [p for name, p in inspect.signature(command).parameters.items() if name != "options"]
        hints = typing.get_type_hints(command)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        added = _field_params(parts, set(skip), help or {})
        names = [p.name for p in added]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, options=options)

        params = own + added
        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # Typer reads the signature above, not the command's own
        return wrapper

    return decorate
