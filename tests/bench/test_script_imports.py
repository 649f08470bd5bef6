"""The benchmark scripts import attnmoe's public names as they are, not under private aliases."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "benchmarks"


def private_aliases(source: str) -> list[str]:
    """``name as _name`` imports of a public name in ``source``."""
    return [
        f"{alias.name} as {alias.asname}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnmoe")
        for alias in node.names
        if alias.asname and alias.asname.startswith("_") and not alias.name.startswith("_")
    ]


def test_the_finder_finds_a_private_alias():
    assert private_aliases("from attnmoe.x import Objective as _Objective") == [
        "Objective as _Objective"
    ]
    assert private_aliases("from attnmoe.x import _helper as _h\nimport os as _os") == []


@pytest.mark.skipif(not SCRIPTS.is_dir(), reason="needs the repository's benchmarks/")
@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.py")), ids=lambda p: p.name)
def test_no_public_name_under_a_private_alias(script: Path):
    assert private_aliases(script.read_text(encoding="utf-8")) == []
