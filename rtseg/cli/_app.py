"""The Typer application object and shared console helpers."""
from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

app = typer.Typer(
    name="rtseg",
    help="Real-time video semantic segmentation: run, bench, export, train, eval.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # user errors are one line; internal ones keep a plain traceback
    rich_markup_mode=None,  # help texts are plain text: "[default: ...]" and "rtseg[train]" print as written
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Piped (not a terminal, no COLUMNS), Rich would wrap tables at 80 columns and cut paths: give it room.
_PIPED_WIDTH = 160
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else _PIPED_WIDTH)
console_err = Console(stderr=True, width=None if sys.stderr.isatty() or os.environ.get("COLUMNS") else _PIPED_WIDTH)


def parse_pair(text: str, *, flag: str, cast=float) -> tuple:
    """'0.5,2.0' or '360x480' -> a pair, with an error naming the flag."""
    from rtseg.errors import RtsegError

    parts = text.lower().replace("x", ",").split(",")
    try:
        a, b = (cast(p) for p in parts)
    except ValueError:
        raise RtsegError(f"{flag} expects two numbers like '{'360x480' if cast is int else '0.5,2.0'}', got {text!r}") from None
    return a, b


def _version(value: bool) -> None:
    if value:
        import rtseg

        console.print(f"rtseg {rtseg.__version__}", highlight=False)
        raise typer.Exit()


def has_display() -> bool:
    """Whether a window can open: not on Linux without DISPLAY or WAYLAND_DISPLAY (SSH, a container)."""
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def require_display(what: str, instead: str) -> None:
    """A one-line error, before any work, when a window cannot open: on Linux without a display
    (an SSH session, a container) Qt would abort the process and leave no output file."""
    from rtseg.errors import RtsegError

    if not has_display():
        raise RtsegError(f"{what} needs a display and this session has none (DISPLAY and WAYLAND_DISPLAY are unset); "
                         f"{instead}")


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print rtseg's version and exit.")) -> None:
    """Real-time video semantic segmentation: run, bench, export, train, eval."""
