"""Choose the attention block form of AttentionMoEClassifier on training rows only (issue 3).

Usage: .venv/bin/python benchmarks/select_tabular_block.py [--seeds 5] [--jobs 2]

The paper's model is the ``"bert"`` block (attention, residual + LayerNorm,
feed-forward, residual + LayerNorm, then the output layer); ``"pure"`` is the
mixture of continuous word experts alone, the form the paper's equivalence is
about. Which one generalises better when features pair their values differently
at test time is decided before any test split is scored, by the rule of
``select_tabular_option.py`` (``"pure"`` replaces ``"bert"`` only if it beats it on
the least typical quarter of the training rows by more than one standard error).
"""

from __future__ import annotations

import sys

from select_tabular_option import main

if __name__ == "__main__":
    main(
        ["--option", "block", "--candidates", '"bert"', '"pure"',
         "--out", "benchmarks/results/tabular/levers/block_pure/selection.md", *sys.argv[1:]]
    )  # fmt: skip
