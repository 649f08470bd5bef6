"""The README's Python examples run as written."""

from __future__ import annotations

from pathlib import Path

from tests.model.test_docs_math import python_blocks

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    for k, block in enumerate(blocks):
        exec(compile(block, f"README.md[python block {k}]", "exec"), {"__name__": "readme"})
