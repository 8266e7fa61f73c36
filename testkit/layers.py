"""The import rule, read from the source (no module is imported): who may import whom, and no cycles.

Every ``import`` counts, at module level or inside a function, under ``TYPE_CHECKING`` or
not: a lazy import is still a dependency. ``importlib.import_module`` by name is not an
import here (the CLI loads pipelines by name).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from esteira.config import ROOT

PACKAGES = (
    "esteira",
    "esteira_cli",
    "components",
    "pipelines",
    "serving",
    "bench",
    "testkit",
    "tests",
)
# importer package -> packages it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "esteira": ("esteira_cli", "components", "pipelines", "serving", "bench", "testkit", "tests"),
    "components": ("esteira_cli", "pipelines", "serving", "bench", "testkit", "tests"),
    "pipelines": ("esteira_cli", "serving", "bench", "testkit", "tests"),
    "serving": ("esteira_cli", "components", "pipelines", "bench", "testkit", "tests"),
    "bench": ("tests",),
    "tests": ("bench",),
    "testkit": ("bench", "tests"),
}

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _targets(node: ast.AST, known: set[str]) -> Iterable[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
    else:
        return []
    found = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.append(name)
    if isinstance(node, ast.ImportFrom) and len(found) > 1:
        found = found[:-1] if found[-1] == node.module else found  # the submodules, not the package
    return found


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> Graph:
    """First-party module -> the first-party modules it imports."""
    files = {
        module_name(p, root): p
        for package in packages
        for p in sorted((root / package).rglob("*.py"))
        if ".venv" not in p.parts
    }
    known = set(files)
    return {
        name: {t for node in ast.walk(ast.parse(path.read_text())) for t in _targets(node, known)}
        - {name}
        for name, path in files.items()
    }


def layer(module: str) -> str:
    """The module's package, except that every test module (``components/<x>/tests/``) is ``tests``."""
    return "tests" if ".tests." in f".{module}." else module.split(".")[0]


def forbidden_imports(graph: Graph, rules: dict[str, tuple[str, ...]] = FORBIDDEN) -> list[str]:
    """``a imports b`` for every import that crosses a layer the wrong way."""
    problems = []
    for module, targets in sorted(graph.items()):
        banned = rules.get(layer(module), ())
        for target in sorted(targets):
            if layer(target) in banned:
                problems.append(f"{module} imports {target}")
    return problems


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found
