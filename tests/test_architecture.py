"""The import graph of ``src/attnmoe``: no circle, and the layers import downwards only.

Every module is parsed with ``ast``; every import counts, at any depth (deferred
imports inside functions and ``if TYPE_CHECKING:`` blocks included). Relative
imports are resolved; ``from pkg import name`` imports ``pkg.name`` where that
is a module, else ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "attnmoe"

# package -> the packages it must not import (at any depth)
LAYERS = {
    "attnmoe.model": ("training", "cli", "bench", "explain", "tabular", "text", "serve", "pilot"),
    "attnmoe.training": ("cli", "bench", "explain", "tabular", "text", "serve", "pilot"),
    "attnmoe.serve": ("cli", "bench", "text", "pilot"),
    # the pilot sits beside serve/, above bench/ and explain/; only cli/ imports it
    "attnmoe.pilot": ("cli", "serve", "text"),
    "attnmoe.bench": ("pilot",),
    "attnmoe.explain": ("pilot",),
    "attnmoe.tabular": ("pilot",),
    "attnmoe.text": ("pilot",),
}


def module_names(src: Path = SRC, root: str = ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module under ``src/root`` (a package is its __init__)."""
    names = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names before ``import``."""
    if node.level == 0:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's own modules that ``source`` (the text of ``module``) imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != module}


def import_graph(src: Path = SRC, root: str = ROOT) -> dict[str, set[str]]:
    names = module_names(src, root)
    known = set(names)
    return {
        name: imports_of(name, path.read_text(), path.name == "__init__.py", known)
        for name, path in names.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # the graphs here are a few hundred modules deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for package, forbidden in LAYERS.items():
        banned = tuple(f"{ROOT}.{name}" for name in forbidden)
        for module, targets in graph.items():
            if module != package and not module.startswith(package + "."):
                continue
            for target in sorted(targets):
                if any(target == b or target.startswith(b + ".") for b in banned):
                    bad.append(f"{module} imports {target}")
    return bad


# -- the checker itself ---------------------------------------------------------------


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_resolve_relative_deferred_and_from_package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n    from . import c\n")
    (pkg / "c.py").write_text("import pkg.sub\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import a\nfrom ..c import x\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub.b", "pkg.c"},
        "pkg.c": {"pkg.sub"},
        "pkg.sub": set(),
        "pkg.sub.b": {"pkg.a", "pkg.c"},
    }
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_layer_check_reports_a_planted_upward_import():
    graph = {"attnmoe.model.x": {"attnmoe.training.y"}, "attnmoe.training.y": set()}
    assert layer_violations(graph) == ["attnmoe.model.x imports attnmoe.training.y"]


# -- the package ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_the_packages(graph):
    assert "attnmoe.model.attention" in graph["attnmoe.model"]
    assert "attnmoe.model.base" in graph["attnmoe.model.attention"]


def test_no_module_imports_one_that_imports_it_back(graph):
    assert cycles(graph) == []


def test_model_and_training_import_downwards_only(graph):
    assert layer_violations(graph) == []
