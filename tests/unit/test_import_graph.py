"""The import graph, read by grimp (the library import-linter builds on): no cycles anywhere, the layer
contracts of pyproject.toml kept, and project imports at the top of files where a reader sees them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("scones", "services", "training")
# Function-local project imports are kept only where they buy `scones --help` start time: the CLI imports a
# command's module (and with it boto3, numpy, …) when that command runs, not when the parser is built.
LAZY_ALLOWED = {"scones/cli/commands.py", "scones/cli/__init__.py"}


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other, directly or not (size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def module_edges(graph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_tarjan_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert strongly_connected(module_edges(graph)) == []


def test_the_layer_contracts_hold():
    found = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-logo", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stdout[-3000:]


def function_local_project_imports(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and not inner.level:
                    names = [inner.module or ""]
                elif isinstance(inner, ast.Import):
                    names = [alias.name for alias in inner.names]
                else:
                    continue
                if any(n.split(".")[0] in PACKAGES for n in names):
                    lines.append(inner.lineno)
    return sorted(set(lines))


def test_project_imports_sit_at_the_top_of_files():
    hidden = {
        str(path.relative_to(ROOT)): found
        for path in sorted((ROOT / "scones").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in LAZY_ALLOWED and (found := function_local_project_imports(path))
    }
    assert hidden == {}, f"move these imports to the top of the file (file: lines): {hidden}"
