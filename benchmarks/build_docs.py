"""Write docs/benchmarks.md from the Markdown files beside the results.

Usage: .venv/bin/python benchmarks/build_docs.py

The page is ``benchmarks/results/TARGETS.md`` followed by each topic's
``benchmarks/results/<topic>/SECTION.md`` (order and link rewriting:
:mod:`attnmoe.bench.page`). Edit those files, not the page; lab notes stay in the
topics' ``NOTES.md`` and are linked, not copied.
"""

from __future__ import annotations

from pathlib import Path

from attnmoe.bench.page import build_page

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DOC = ROOT.parent / "docs" / "benchmarks.md"


def main() -> None:
    DOC.write_text(build_page(RESULTS, DOC.parent))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
