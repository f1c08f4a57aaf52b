"""The Typer application object and shared console helpers."""
from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="rtseg",
    help="Real-time video semantic segmentation: run, bench, export, train, eval.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # user errors are one line; internal ones keep a plain traceback
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
console_err = Console(stderr=True)


def parse_pair(text: str, *, flag: str, cast=float) -> tuple:
    """'0.5,2.0' or '360x480' -> a pair, with an error naming the flag."""
    from rtseg.errors import RtsegError

    parts = text.lower().replace("x", ",").split(",")
    try:
        a, b = (cast(p) for p in parts)
    except ValueError:
        raise RtsegError(f"{flag} expects two numbers like '{'360x480' if cast is int else '0.5,2.0'}', got {text!r}") from None
    return a, b


@app.callback()
def _root() -> None:
    """Real-time video semantic segmentation: run, bench, export, train, eval."""
