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
