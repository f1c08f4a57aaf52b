"""One way for every script under benchmarks/ to write its results."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_json"]


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON to ``path`` (making its folder) and say where. A dict
    payload gets this machine's record (``"machine"``: CPU model and flags, cores, GPUs, library
    versions; rtseg.machine) unless it has one: the figures differ from machine to machine."""
    from rtseg import machine

    path = Path(path)
    if isinstance(payload, dict) and not isinstance(payload.get("machine"), dict):
        if "machine" in payload:  # an older script's one-line description: kept beside the record
            payload = {**payload, "machine_note": payload["machine"]}
        payload = {**payload, "machine": machine.describe()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
    return path
