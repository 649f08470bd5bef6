"""Paired, per-seed comparison of tabular benchmark runs with the paper (and each other).

Usage::

    .venv/bin/python benchmarks/compare_tabular_runs.py RUN_DIR [--against OTHER_RUN_DIR]
        [--out FILE.md]

``RUN_DIR`` holds the ``runs.csv`` of ``attnmoe bench tabular``. For every
simulation setting, attnmoe's test accuracy on each seed is paired with the
paper's attention model on the very same seed (the generator is exact), and,
with ``--against``, with attnmoe in another run on the same seed: the mean
difference, its standard error (sd of the per-seed differences / sqrt(n)) and
the ratio of the two. auto-mpg has no per-seed published results (one run), so
there only the two runs are paired.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from attnmoe.bench.paper import load_paper_per_seed
from attnmoe.bench.runner import AUTO_MPG, OURS


def _ours(run_dir: Path) -> pd.DataFrame:
    runs = pd.read_csv(run_dir / "runs.csv")
    ours = runs[runs["model"] == OURS].set_index(["dataset", "seed"])["test_accuracy"]
    if not ours.index.is_unique:
        raise ValueError(f"{run_dir / 'runs.csv'} holds some (dataset, seed) twice for {OURS}")
    return ours


def _paired(a: pd.Series, b: pd.Series) -> str:
    """``mean ± SE (mean / SE, n)`` of the per-seed differences a - b."""
    diff = (a - b).dropna()
    n = len(diff)
    if n == 0:
        return "-"
    mean = float(diff.mean())
    if n < 2:
        return f"{mean:+.4f} (n=1)"
    se = float(diff.std(ddof=1) / np.sqrt(n))
    ratio = f"{mean / se:+.1f} SE" if se > 0 else "no spread"
    return f"{mean:+.4f} ± {se:.4f} ({ratio}, n={n})"


def compare(run_dir: Path, against: Path | None = None) -> str:
    ours = _ours(run_dir)
    other = _ours(against) if against is not None else None
    header = ["dataset", "attnmoe", "paper attention (same seeds)", "attnmoe - paper"]
    if other is not None:
        header += [f"attnmoe - {against.name}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for dataset in dict.fromkeys(ours.index.get_level_values("dataset")):
        mine = ours.loc[dataset]
        cells = [dataset, f"{mine.mean():.4f} (n={len(mine)})"]
        if dataset == AUTO_MPG:
            cells += ["-", "-"]
        else:
            paper = load_paper_per_seed(dataset).set_index("seed")["acc_test_at"]
            cells += [f"{paper.loc[mine.index].mean():.4f}", _paired(mine, paper)]
        if other is not None:
            theirs = other.loc[dataset] if dataset in other.index.get_level_values(0) else None
            cells.append("-" if theirs is None else _paired(mine, theirs))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--against", type=Path, default=None, help="another run to pair with")
    parser.add_argument("--out", type=Path, default=None, help="write the table here too")
    args = parser.parse_args()
    command = shlex.join([".venv/bin/python", "benchmarks/compare_tabular_runs.py", *sys.argv[1:]])
    protocols = ""
    for run in (args.run_dir, args.against):
        if run is not None and "attnmoe_unlabeled_test" in pd.read_csv(run / "runs.csv").columns:
            protocols += (
                f"{run}: transductive, attnmoe also trained on the test rows' features (never "
                "their labels).\n\n"
            )
    text = (
        f"# Paired per-seed comparison: {args.run_dir}\n\nCommand: `{command}`\n\n{protocols}"
        "Per-seed differences of test accuracy, mean ± standard error (sd / sqrt(n)), and "
        "the mean in standard errors.\n\n" + compare(args.run_dir, args.against)
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
