"""A batch's inputs (files, folders, globs, lists) and the output names that mirror them."""
from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rtseg.errors import RtsegError

__all__ = ["Item", "find_inputs", "plan", "VIDEO_SUFFIXES", "LIST_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")
LIST_SUFFIXES = (".txt", ".list")  # a text file of inputs, one a line


@dataclass(frozen=True)
class Item:
    """One input and where its outputs go (absolute paths, as every node sees them)."""

    input: str
    output: str  # the overlay video
    masks: str | None = None  # a folder
    stats: str | None = None  # a JSON Lines file

    def finals(self) -> dict[str, Path]:
        outs = {"stats": self.stats, "masks": self.masks, "output": self.output}  # renamed in this order: video last
        return {k: Path(v) for k, v in outs.items() if v is not None}


def find_inputs(specs: Sequence[str | Path], *, exclude: str | Path | None = None) -> list[Path]:
    """Files, folders (their videos, recursively), globs and ``.txt`` lists (one input a line,
    relative to the list's folder; ``#`` comments) as one list, in order, each input once.
    A path that does not exist stays in the list (it fails alone); a glob matching nothing is an error."""
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[Path] = []
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if any(c in text for c in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise RtsegError(f"{text} matches no file")
            found += [q for m in matches for q in (_videos_in(Path(m)) if Path(m).is_dir() else [Path(m)])]
        elif path.is_dir():
            found += _videos_in(path)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            lines = [ln.strip() for ln in path.read_text().splitlines()]
            found += find_inputs([str(path.parent / ln) for ln in lines if ln and not ln.startswith("#")])
        else:
            found.append(path)
    seen: set[Path] = set()
    unique = []
    for p in found:
        r = p.resolve()
        if r not in seen and not (skip is not None and r.is_relative_to(skip)):
            seen.add(r)
            unique.append(r)
    if not unique:
        raise RtsegError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {', '.join(map(str, specs)) or 'INPUTS'}")
    return unique


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                  and not p.name.startswith("."))


def plan(inputs: Sequence[Path], output_dir: str | Path, *, masks: bool = False, stats: bool = False) -> list[Item]:
    """Output names that mirror the inputs under ``output_dir``: ``a/b.mp4`` -> ``a/b_seg.mp4``
    (+ ``b_masks/``, ``b_stats.jsonl``), paths relative to the inputs' common folder; inputs whose
    names would collide (``b.mp4``, ``b.avi``) keep their suffix in the name (``b_mp4_seg.mp4``)."""
    out = Path(output_dir).resolve()
    files = [Path(p).resolve() for p in inputs]
    root = Path(os.path.commonpath([str(p.parent) for p in files]))
    rel = [p.relative_to(root) for p in files]
    stems = [r.parent / r.stem for r in rel]
    twice = {s for s, n in Counter(stems).items() if n > 1}
    stems = [s.parent / f"{s.name}_{r.suffix.lstrip('.')}" if s in twice else s for s, r in zip(stems, rel)]
    taken: set[Path] = set()
    items = []
    for path, stem in zip(files, stems):
        base, n = stem, 1
        while base in taken:  # "b.mp4" beside "b_mp4.mov", say: still distinct
            n += 1
            base = stem.parent / f"{stem.name}_{n}"
        taken.add(base)
        d = out / base.parent
        items.append(Item(str(path), str(d / f"{base.name}_seg.mp4"),
                          str(d / f"{base.name}_masks") if masks else None,
                          str(d / f"{base.name}_stats.jsonl") if stats else None))
    return items


