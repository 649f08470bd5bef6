"""One `attnmoe bench tabular` report over the runs of several folders, on their common seeds.

Usage::

    .venv/bin/python benchmarks/combine_tabular_runs.py RUN_DIR [RUN_DIR ...] --out FILE.md

The command line of :mod:`attnmoe.bench.pooled`: each ``RUN_DIR`` holds the ``runs.csv``
of ``attnmoe bench tabular``; fits nothing, pools the runs on the seeds every model ran
and writes the report ``attnmoe bench tabular`` writes.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from attnmoe.bench.pooled import pooled_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    command = ".venv/bin/python benchmarks/combine_tabular_runs.py " + shlex.join(sys.argv[1:])
    text = pooled_report(args.run_dirs, command)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
