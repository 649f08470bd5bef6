"""The Python examples of ``docs/math.md`` run and their assertions hold (the doc cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

MATH_DOC = Path(__file__).resolve().parents[2] / "docs" / "math.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the fenced ```python blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.skipif(not MATH_DOC.is_file(), reason="docs/math.md is not in this checkout")
def test_math_doc_examples_run() -> None:
    blocks = python_blocks(MATH_DOC.read_text(encoding="utf-8"))
    assert blocks, "docs/math.md has no python examples"
    namespace: dict[str, object] = {"__name__": "docs_math"}
    for k, block in enumerate(blocks):
        # later blocks may use names defined by earlier ones, as a reader would
        exec(compile(block, f"docs/math.md[python block {k}]", "exec"), namespace)
