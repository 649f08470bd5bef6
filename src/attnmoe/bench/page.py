"""docs/benchmarks.md, stitched from the Markdown beside the results.

The page is the targets table (``benchmarks/results/TARGETS.md``) followed by one short
section per topic (``benchmarks/results/<topic>/SECTION.md``), in :data:`TOPICS`' order.
The prose lives in those files; this module only joins them and rewrites their relative
links, written from each file's own folder, to point from the page's folder.
``benchmarks/build_docs.py`` is the command line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TARGETS = "TARGETS.md"
SECTION = "SECTION.md"
#: the topics of the page, in order: each a folder of ``benchmarks/results`` with a SECTION.md
TOPICS = (
    "speed",
    "tabular",
    "baselines",
    "real_tables",
    "scale",
    "table_scale",
    "ddp",
    "text",
    "reliability",
    "serve",
)

# a Markdown link's target: ](target) or ](target "title")
_LINK = re.compile(r"\]\(([^)\s]+)")


def relink(text: str, source_dir: Path, page_dir: Path) -> str:
    """``text`` with its relative link targets, written from ``source_dir``, rewritten to
    point from ``page_dir``; absolute URLs, absolute paths and in-page anchors stay."""

    def rewrite(match: re.Match[str]) -> str:
        target = match.group(1)
        if target.startswith(("#", "/")) or "://" in target or target.startswith("mailto:"):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        moved = os.path.relpath(os.path.normpath(source_dir / path), page_dir)
        moved = Path(moved).as_posix() + ("/" if path.endswith("/") else "")
        return f"]({moved}{hash_}{anchor}"

    return _LINK.sub(rewrite, text)


def build_page(results: Path, page_dir: Path) -> str:
    """The text of docs/benchmarks.md: ``results/TARGETS.md``, then every topic's
    ``SECTION.md`` in :data:`TOPICS`' order, each followed by one blank line; links
    rewritten to work from ``page_dir``."""
    files = [results / TARGETS, *(results / topic / SECTION for topic in TOPICS)]
    parts = [relink(f.read_text().strip(), f.parent.resolve(), page_dir.resolve()) for f in files]
    return "\n\n".join(parts) + "\n"
