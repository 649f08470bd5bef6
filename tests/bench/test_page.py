"""attnmoe.bench.page: docs/benchmarks.md is the stitched Markdown beside the results."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from attnmoe.bench.page import TOPICS, build_page, relink

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def test_relink_points_relative_links_from_the_page(tmp_path: Path) -> None:
    source, page = tmp_path / "benchmarks" / "results" / "ddp", tmp_path / "docs"
    text = "[a](run1.md) [b](../cost/) [c](#ddp) [d](https://x.org/a) [e](NOTES.md#x)"
    assert relink(text, source, page) == (
        "[a](../benchmarks/results/ddp/run1.md) [b](../benchmarks/results/cost/) [c](#ddp) "
        "[d](https://x.org/a) [e](../benchmarks/results/ddp/NOTES.md#x)"
    )


@pytest.mark.skipif(not RESULTS.is_dir(), reason="needs the repository's benchmarks/")
def test_docs_benchmarks_md_is_build_docs_output() -> None:
    page = build_page(RESULTS, REPO / "docs")
    assert (REPO / "docs" / "benchmarks.md").read_text() == page, (
        "docs/benchmarks.md is stale: run benchmarks/build_docs.py"
    )
    # every topic has its section, and every relative link of the page resolves
    assert all((RESULTS / topic / "SECTION.md").is_file() for topic in TOPICS)
    for target in re.findall(r"\]\(([^)#\s]+)", page):
        if "://" not in target:
            assert (REPO / "docs" / target).exists(), target


@pytest.mark.skipif(not RESULTS.is_dir(), reason="needs the repository's benchmarks/")
def test_link_texts_name_files_from_the_results_folder_not_a_section() -> None:
    """A link's text is not relinked: a ``../`` in it would mean nothing on the page."""
    page = build_page(RESULTS, REPO / "docs")
    assert re.findall(r"\[`\.\./[^`]*`\]", page) == []
