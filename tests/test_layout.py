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
APP_MODULES = {"streaming", "doctor", "fleet", "context"}
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


# --- #35: one declaration of a run, one place for each decision, no tricks (counted with ast) ---

def _trees():
    for path in _modules():
        yield path, _dotted(path), ast.parse(path.read_text(), str(path))


def _calls(tree: ast.AST, name: str) -> int:
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.Call) and
               (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name))


def test_temporal_is_parsed_once_and_resolved_once():
    where = {name: [m for _, m, tree in _trees() for _ in range(_calls(tree, name))]
             for name in ("parse_temporal", "resolve_temporal")}
    assert where == {"parse_temporal": ["rtseg.pipeline.spec"], "resolve_temporal": ["rtseg.pipeline.context"]}


def test_no_module_imports_a_private_name_of_another():
    bad = []
    for path, module, tree in _trees():
        for line, target, names in _imports(tree, module, path.name == "__init__.py"):
            bad += [f"{module}:{line} from {target} import {n}" for n in names
                    if n.startswith("_") and not n.startswith("__") and target != module]
    assert not bad, "private names imported from other modules:\n" + "\n".join(bad)


def _edges() -> dict[str, set[str]]:
    """module -> the rtseg modules it imports (any import, also one inside a function)."""
    known = {m for _, m, _ in _trees()}
    edges: dict[str, set[str]] = {}
    for path, module, tree in _trees():
        out = edges.setdefault(module, set())
        for _, target, names in _imports(tree, module, path.name == "__init__.py"):
            out.add(target)
            out.update(f"{target}.{n}" for n in names if f"{target}.{n}" in known)
    return edges


def _package(module: str) -> str:
    """The package a module is in (a package's ``__init__`` is in the package itself)."""
    return module if (PKG.parent / module.replace(".", "/") / "__init__.py").is_file() else module.rsplit(".", 1)[0]


def test_no_import_circle_inside_a_package():
    edges, circles = _edges(), []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in edges.get(node, ()) - {node}:
                if nxt == start and len(trail) > 1:
                    circles.append(" -> ".join(trail + [start]))
                elif nxt in edges and _package(nxt) == _package(start) and nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
    assert not circles, "import circles inside a package:\n" + "\n".join(sorted(set(circles)))


def test_the_circle_check_sees_one():
    tree_a, tree_b = ast.parse("def f():\n    from rtseg.pipeline import b\n"), ast.parse("from rtseg.pipeline import a\n")
    found = {t for tree, m in ((tree_a, "rtseg.pipeline.a"), (tree_b, "rtseg.pipeline.b"))
             for _, t, _ in _imports(tree, m, False)}
    assert found == {"rtseg.pipeline"}  # resolved to the package; _edges adds the module named in the import


def test_no_tricks_in_library_code():
    bad = []
    for path, module, tree in _trees():
        for n in ast.walk(tree):
            if isinstance(n, ast.Global):
                bad.append(f"{module}:{n.lineno} global {', '.join(n.names)}")
            elif isinstance(n, ast.Attribute) and n.attr == "_exit":
                bad.append(f"{module}:{n.lineno} os._exit")
            elif isinstance(n, ast.Attribute) and n.attr == "__class__" and isinstance(n.ctx, ast.Store):
                bad.append(f"{module}:{n.lineno} assigns a __class__ (a module swapped for a class?)")
    assert not bad, "\n".join(bad)


# Options a command declares itself that share a flag with the spec's on purpose: rtseg batch's
# --masks/--stats say "beside each video" (no folder or file to name), rtseg run's name one;
# rtseg import's --output and --size are the artifact it writes. rtseg export makes an artifact,
# not a run: its flags are its own.
OWN_FLAGS = {("rtseg.cli.batch", "--masks"), ("rtseg.cli.batch", "--stats"), ("rtseg.cli.import_", "--output"),
             ("rtseg.cli.import_", "-o"), ("rtseg.cli.import_", "--size")}


def _typer_flags(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "Option":
            found += [(n.lineno, a.value) for a in n.args if isinstance(a, ast.Constant) and
                      isinstance(a.value, str) and a.value.startswith("-")]
    return found


def test_no_run_option_is_declared_twice():
    """The spec declares each option of a run once (rtseg/pipeline/spec.py) and rtseg.cli.options
    makes the flags from it: no command declares one of them again, and no flag of the commands
    that open a run is declared in two places."""
    from dataclasses import fields

    from rtseg.pipeline.spec import GROUPS

    spec_flags = {flag for cls in GROUPS.values() for f in fields(cls) for spelled in f.metadata.get("flags", ())
                  for flag in spelled.split("/")}
    seen: dict[str, str] = {}
    bad = []
    for path, module, tree in _trees():
        if not module.startswith("rtseg.cli.") or module == "rtseg.cli.export":
            continue
        for line, spelled in _typer_flags(tree):
            for flag in spelled.split("/"):
                if flag in spec_flags and (module, flag) not in OWN_FLAGS:
                    bad.append(f"{module}:{line} declares {flag}, which the spec declares")
                if module in ("rtseg.cli.run", "rtseg.cli.bench", "rtseg.cli.eval", "rtseg.cli.batch") and \
                        flag in seen and flag not in ("--quiet", "-q", "--json", "--trace"):
                    bad.append(f"{module}:{line} declares {flag} again (also {seen[flag]})")
                seen.setdefault(flag, f"{module}:{line}")
    assert not bad, "\n".join(bad)
