"""``rtseg doctor``: which engines, devices and optional packages are usable here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from rtseg.cli._app import app, console

_MARK = {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]-[/]"}


@app.command()
def doctor(json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the checks as JSON here."),
           measure: bool = typer.Option(True, "--measure/--no-measure", help="With no choice of --runtime auto cached for this machine, measure it once for the bundled weights (about 10 s the first time).")) -> None:
    """Show Python, torch devices, ONNX Runtime providers, TensorRT/OpenVINO, OpenCV video and GUI
    support, and which runtime auto picks here with the times it measured."""
    from rtseg.doctor import run_checks

    checks = run_checks(measure)
    table = Table("", "check", "ok", "version", "detail", title="rtseg doctor")
    section = None
    for c in checks:
        table.add_row(c.section if c.section != section else "", c.name, _MARK[c.ok], escape(c.version), escape(c.detail))
        section = c.section
    console.print(table)
    if json_path is not None:
        json_path.write_text(json.dumps([c.to_dict() for c in checks], indent=1))
        console.print(f"wrote {json_path}")
