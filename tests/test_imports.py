"""No import cycles inside ``efm``: module-level or function-level (the latter only keep start-up
fast; they must not hide a cycle). Checked statically from the source, with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"


def _modules() -> dict[str, Path]:
    out = {}
    for path in CORE.rglob("*.py"):
        parts = ["efm", *path.relative_to(CORE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The efm modules ``name`` imports anywhere in its file (``from a import b`` counts as
    ``a.b`` when that is a module, else ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in mods else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in mods and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_efm_has_no_import_cycle():
    mods = _modules()
    assert "efm.config" in mods and "efm.data.prepare" in mods
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    assert "efm.registry" in graph["efm.config"]  # the graph is real
    assert _cycles(graph) == []


def test_layers_point_one_way():
    """Orchestration (``efm.run``) sits on top: ``efm.train`` never imports ``efm.evaluate`` or
    ``efm.run``, and ``efm.data`` imports neither of the layers above it."""
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    above = {
        "efm.train": ("efm.evaluate", "efm.run"),
        "efm.data": ("efm.train", "efm.evaluate", "efm.run"),
    }
    bad = [
        f"{m} imports {d}"
        for m, deps in graph.items()
        for layer, banned in above.items()
        if m == layer or m.startswith(layer + ".")
        for d in deps
        if any(d == b or d.startswith(b + ".") for b in banned)
    ]
    assert bad == []
