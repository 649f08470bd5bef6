"""The paper's model rerun in Keras on every setting, in one table, read against issue 3's
accuracy targets (the command line of :mod:`attnmoe.bench.keras_reruns`).

Usage::

    .venv/bin/python benchmarks/collect_keras_seeds.py [--results benchmarks/results/tabular]
        [--out benchmarks/results/tabular/keras_reruns/all_settings.md]

Runs no model: it gathers what ``bench_keras_seeds.py`` wrote (every
``keras_reruns/*/runs.csv`` under ``--results``), attnmoe's runs of the paper's
configuration (``paper_20seeds``: one model; ``three_averaged_20seeds``: three
averaged) and the paper's per-seed results; the reading is explained in
:mod:`attnmoe.bench.keras_reruns`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from attnmoe.bench.keras_reruns import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="benchmarks/results/tabular")
    parser.add_argument("--out", default="benchmarks/results/tabular/keras_reruns/all_settings.md")
    args = parser.parse_args()
    command = ".venv/bin/python benchmarks/collect_keras_seeds.py"
    if sys.argv[1:]:
        command += " " + shlex.join(sys.argv[1:])
    text = report(Path(args.results), command)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
