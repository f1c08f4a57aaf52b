"""The ``rtseg`` command line. Only this package imports Typer and Rich; each command lives
in its own module and the library does the work."""
from __future__ import annotations

import logging
import sys


from rtseg.cli._app import app, console_err
from rtseg.errors import RtsegError

# Importing a command module registers its command on ``app``.
from rtseg.cli import train as _train  # noqa: F401,E402
from rtseg.cli import run as _run  # noqa: F401,E402  (run, webcam)
from rtseg.cli import bench as _bench  # noqa: F401,E402
from rtseg.cli import eval as _eval  # noqa: F401,E402
from rtseg.cli import export as _export  # noqa: F401,E402
from rtseg.cli import doctor as _doctor  # noqa: F401,E402

__all__ = ["app", "main"]


class _OneLine(logging.Formatter):
    """``warning: message`` (the level in lower case, as the CLI's ``error:`` lines)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def main() -> None:
    """Console-script entry point: user errors print one line and exit 2."""
    # Library warnings read like the CLI's own lines: "warning: ...", not logging's "WARNING name: ...".
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    try:
        app()
    except RtsegError as exc:
        from rich.markup import escape  # the message is text, not markup: "rtseg[trt]" must print as is

        console_err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console_err.print("interrupted")
        sys.exit(130)
