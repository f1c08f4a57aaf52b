"""The package's shape (docs/architecture.md): parts import only parts below them, nothing but the
CLI imports the top-level package, and no module or function grows past what one can hold in
one's head. Read from the source with ``ast``, so every import counts, also those inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "rtseg"

# Parts, lowest first: a module may import its own part and the parts before it, never one after.
PARTS = ("core", "nets", "formats", "gpu", "export", "engines", "pipeline", "train", "app", "cli")
# Top-level modules that are not core: the front doors a user calls (above train, below the CLI).
APP_MODULES = {"streaming", "doctor", "batch", "context"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str | None:
    """'rtseg.engines.ort_engine' -> 'engines'; None for the package itself."""
    names = module.split(".")
    if names[0] != "rtseg" or len(names) == 1:
        return None
    top = names[1]
    if top in PARTS:
        return top
    if top in ("_models", "_assets"):
        return "core"
    if top == "checkpoint":
        return "formats"
    return "app" if top in APP_MODULES else "core"


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) for every import of rtseg code, relative ones resolved."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "rtseg"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "rtseg":
                found.append((node.lineno, target, [a.name for a in node.names]))
    return found


def _is_subpackage_or_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PKG / rel).with_suffix(".py").is_file() or (PKG / rel / "__init__.py").is_file()


def test_parts_import_only_parts_below_them():
    order = {p: i for i, p in enumerate(PARTS)}
    bad = []
    for path in _modules():
        module = _dotted(path)
        if module == "rtseg":  # the package's __init__ re-exports the public API, lazily
            continue
        mine = part_of(module)
        tree = ast.parse(path.read_text(), str(path))
        for line, target, names in _imports(tree, module, path.name == "__init__.py"):
            if target == "rtseg":  # `import rtseg` / `from rtseg import x`: the top-level package
                subs = [n for n in names if _is_subpackage_or_module(f"rtseg.{n}")]
                if mine != "cli" and (not names or len(subs) < len(names)):
                    bad.append(f"{path.relative_to(PKG.parent)}:{line} imports the top-level package rtseg")
                continue
            theirs = part_of(target)
            if theirs is not None and order[theirs] > order[mine]:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} ({mine}) imports {target} ({theirs})")
    assert not bad, "imports that run back up:\n" + "\n".join(bad)


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for path in _modules():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(PKG.parent)}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name}: {n} lines")
    assert not long_modules and not long_functions, (
        f"modules over {MAX_MODULE_LINES} lines: {long_modules}; functions over {MAX_FUNCTION_LINES}: {long_functions}")


@pytest.mark.parametrize("module, part", [("rtseg.engines.ort_engine", "engines"), ("rtseg.viz", "core"),
                                          ("rtseg.checkpoint", "formats"), ("rtseg.streaming", "app"),
                                          ("rtseg.cli.run", "cli"), ("rtseg", None)])
def test_part_of(module, part):
    assert part_of(module) == part


def test_the_check_sees_a_bad_import(tmp_path):
    """The walker finds function-local and relative imports (so the checks above can fail)."""
    tree = ast.parse("def f():\n    from rtseg.cli import app\n    from ..pipeline import run\n")
    found = _imports(tree, "rtseg.engines.x", False)
    assert [(t, n) for _, t, n in found] == [("rtseg.cli", ["app"]), ("rtseg.pipeline", ["run"])]
