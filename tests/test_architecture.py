"""The layering docs/ARCHITECTURE.md describes, checked on the source: no import circles
(module-level or inside functions), codec/ imports nothing of the project but errors,
predict/ never imports parallel/, and nothing below parallel/ imports it or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "tezip_hpc"


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """Every project module -> the project modules it imports, anywhere in its body."""
    mods = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")
                    up = up[:len(up) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for n in names:
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                if n and n != mod and n.startswith("tezip_hpc"):
                    graph[mod].add(n)
    return graph


def _cycles(graph):
    seen, stack, found = set(), [], []

    def visit(m):
        if m in stack:
            found.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    return found


def test_no_import_circles():
    g = imports()
    # package __init__ files re-export their children: edges into a package are not circles
    g = {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in g.items()}
    assert _cycles(g) == []


def test_layers_import_downward_only():
    g = imports()
    for mod, deps in g.items():
        if mod.startswith("tezip_hpc.codec"):
            bad = {d for d in deps if not d.startswith(("tezip_hpc.codec", "tezip_hpc.errors"))}
            assert not bad, f"{mod} (codec) imports {bad}"
        if mod.startswith(("tezip_hpc.codec", "tezip_hpc.predict", "tezip_hpc.archive", "tezip_hpc.io",
                           "tezip_hpc.chunk", "tezip_hpc.options", "tezip_hpc.launch")):
            bad = {d for d in deps if d.startswith(("tezip_hpc.parallel", "tezip_hpc.cli", "tezip_hpc.commands"))}
            assert not bad, f"{mod} imports upward: {bad}"


def _root_names_imported() -> dict[str, set[str]]:
    """Module -> the names it imports from the package root that are not submodules (a
    name defined in tezip_hpc/__init__.py: importing it runs the root's own imports)."""
    mods = {_module(p) for p in PKG.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        mod = _module(path)
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[:len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                if base == "tezip_hpc" and mod != "tezip_hpc":
                    names = {a.name for a in node.names if f"tezip_hpc.{a.name}" not in mods}
                    if names:
                        out.setdefault(mod, set()).update(names)
    return out


def test_nothing_imports_names_from_the_package_root():
    """The root re-exports the API; a module that takes a name from it (``from .. import
    __version__``) makes a circle through the root (root -> api -> archive -> root)."""
    assert _root_names_imported() == {}


def _function_lines(node) -> int:
    return node.end_lineno - node.lineno + 1


def _argparse_table(node) -> bool:
    """A function that is mostly ``add_argument`` calls (a CLI's option table)."""
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "add_argument"]
    return len(calls) >= 10


def test_modules_and_functions_stay_small():
    """No module over 400 lines, no function over 100 (argparse tables aside): a room that
    grows past that does several jobs and is split by job (docs/ARCHITECTURE.md)."""
    big_mods, big_funcs = [], []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 400:
            big_mods.append(f"{path.relative_to(PKG)} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _function_lines(node) > 100 \
                    and not _argparse_table(node):
                big_funcs.append(f"{path.relative_to(PKG)}:{node.lineno} {node.name} ({_function_lines(node)} lines)")
    assert big_mods == [] and big_funcs == []


def test_capabilities_are_declared_not_probed():
    """Outside codec/ (array backends: numpy vs CuPy), no ``hasattr``: what a predictor or
    session can do is declared by predict/base.py's protocols."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        if path.relative_to(PKG).parts[0] == "codec":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
                found.append(f"{path.relative_to(PKG)}:{node.lineno}")
    assert found == []


def test_errors_are_not_told_apart_by_their_text():
    """An error's kind and flags are data (errors.py's classes and their fields): no code
    tests a substring of an exception's message, splits one, or rebuilds a class by name."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            # "..." in str(exc) / "..." in exc.args[0]
            if isinstance(node, ast.Compare) and any(isinstance(o, (ast.In, ast.NotIn)) for o in node.ops):
                right = node.comparators[0]
                if isinstance(right, ast.Call) and isinstance(right.func, ast.Name) and right.func.id == "str" \
                        and right.args and isinstance(right.args[0], ast.Name) \
                        and right.args[0].id in ("exc", "err", "e", "error"):
                    found.append(f"{path.relative_to(PKG)}:{node.lineno} (substring of a message)")
            # getattr(errors, name): a class rebuilt from its name
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                    and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "errors":
                found.append(f"{path.relative_to(PKG)}:{node.lineno} (class by name)")
    assert found == []
