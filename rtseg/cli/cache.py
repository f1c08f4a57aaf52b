"""``rtseg cache``: what the export cache holds (rtseg/engines/cache_index.py), and ``rtseg cache
clear`` to empty it."""
from __future__ import annotations

import time
from typing import Optional

import typer
from rich.table import Table

from rtseg.cli._app import app, console

cache_app = typer.Typer(help="List the cache of exported and wrapped models (~/.cache/rtseg or $RTSEG_CACHE); "
                             "clear it.", no_args_is_help=False, invoke_without_command=True)
app.add_typer(cache_app, name="cache")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _ago(t: float) -> str:
    s = max(0.0, time.time() - t)
    return f"{s / 86400:.1f} d ago" if s >= 86400 else f"{s / 3600:.1f} h ago" if s >= 3600 else f"{s / 60:.0f} min ago"


@cache_app.callback()
def cache_list(ctx: typer.Context) -> None:
    """List what the cache holds: model, kind, artifact, precision, size, bytes, last used."""
    if ctx.invoked_subcommand is not None:
        return
    from rtseg.engines.cache import cache_root
    from rtseg.engines.cache_index import entries, max_bytes

    root = cache_root()
    found = entries(root)
    table = Table("model", "kind", "artifact", "precision", "size", "MB", "last used", "file",
                  title=f"rtseg cache: {root}")
    for e in found:
        table.add_row(e.model, e.kind, e.artifact, e.precision, e.size_hw, f"{e.bytes / 1e6:.1f}", _ago(e.last_used),
                      e.path.name)
    console.print(table)
    limit = max_bytes()
    console.print(f"{len(found)} entries, {_mb(sum(e.bytes for e in found))} of "
                  f"{_mb(limit) if limit else 'no limit'} (RTSEG_CACHE_MAX); auto's measured choices: "
                  f"{'kept in ' + str(root / 'auto_runtime.json') if (root / 'auto_runtime.json').is_file() else 'none'} "
                  "(rtseg doctor shows them)", highlight=False, soft_wrap=True)


@cache_app.command("clear")
def cache_clear(older_than: Optional[float] = typer.Option(None, "--older-than", metavar="DAYS", help=(
        "Only the entries not used for DAYS days. Without it: everything, auto's measured choices too (the next "
        "run measures again)."))) -> None:
    """Remove cached exports and wrapped models (they are made again when needed)."""
    from rtseg.engines.cache import cache_root
    from rtseg.engines.cache_index import clear
    from rtseg.errors import RtsegError

    if older_than is not None and older_than < 0:
        raise RtsegError(f"--older-than {older_than} is not allowed; use days >= 0")
    gone = clear(cache_root(), older_than)
    what = f"unused for {older_than:g} days" if older_than is not None else "and auto's measured choices"
    console.print(f"removed {len(gone)} entries ({_mb(sum(e.bytes for e in gone))}) {what} from {cache_root()}",
                  highlight=False, soft_wrap=True)
