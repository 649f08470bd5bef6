"""Choose the ensemble size of AttentionMoEClassifier on training data only (issue 3).

Usage: .venv/bin/python benchmarks/select_tabular_ensemble.py [--seeds 5] [--jobs 2]

Averaging the probabilities of independently seeded fits (``n_ensembles``) is the
lever the issue names against the large seed-to-seed variance. The size is chosen
here, before any test split is scored, by a rule fixed in advance:

- data: the *training* split of every simulation setting (first ``--seeds`` seeds)
  and of auto-mpg, each cut 75/25 into fit and validation rows (in-distribution);
- candidates: 1, 3 and 5 models. One ``n_ensembles=5`` fit per run; the first n
  of its members are exactly the ``n_ensembles=n`` fit (same member seeds), so
  each candidate is scored from the same fits;
- rule: the candidate with the highest mean validation accuracy over all runs;
  a larger ensemble must beat a smaller one by more than one standard error of
  the paired per-run difference, otherwise the smaller one is kept.

The shifted test splits are never loaded. Writes a markdown table (mean ± sd of
validation accuracy and log loss per candidate) and the choice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from attnmoe.bench.datasets import SIMULATION_SEEDS, SIMULATION_SETTINGS, load_auto_mpg
from attnmoe.bench.machine import machine_description
from attnmoe.tabular import AttentionMoEClassifier

CANDIDATES = (1, 3, 5)


def _training_split(dataset: str, seed: int):
    if dataset == "auto-mpg":
        data = load_auto_mpg()
    else:
        data = next(s for s in SIMULATION_SETTINGS if s.name == dataset).make(seed)
    return data.X_train, data.y_train  # the test split is not touched


def score_run(dataset: str, seed: int) -> list[dict]:
    X, y = _training_split(dataset, seed)
    X_fit, X_val, y_fit, y_val = train_test_split(X, y, test_size=0.25, random_state=seed)
    clf = AttentionMoEClassifier(n_ensembles=max(CANDIDATES), random_state=seed, verbose=0)
    clf.fit(X_fit, y_fit)
    members = clf.models_
    rows = []
    try:
        for n in CANDIDATES:
            clf.models_ = members[:n]  # the n_ensembles=n fit: its members are these
            proba = clf.predict_proba(X_val)
            rows.append(
                {
                    "dataset": dataset,
                    "seed": seed,
                    "n_ensembles": n,
                    "val_accuracy": float(np.mean(clf.classes_[proba.argmax(1)] == y_val)),
                    "val_log_loss": float(log_loss(y_val, proba, labels=clf.classes_)),
                }
            )
    finally:
        clf.models_ = members
    return rows


def choose(results: pd.DataFrame) -> tuple[int, str]:
    """The rule of the module docstring; returns the size and the reason."""
    wide = results.pivot_table(index=["dataset", "seed"], columns="n_ensembles",
                               values="val_accuracy")  # fmt: skip
    chosen = CANDIDATES[0]
    reasons = []
    for n in CANDIDATES[1:]:
        diff = wide[n] - wide[chosen]
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        better = diff.mean() > se
        reasons.append(
            f"{n} vs {chosen}: mean difference {diff.mean():+.4f} (SE {se:.4f}) -> "
            + ("larger kept" if better else "smaller kept")
        )
        if better:
            chosen = n
    return chosen, "; ".join(reasons)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="simulation seeds per setting")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--out", default="benchmarks/results/tabular/three_averaged_20seeds/selection.md"
    )
    args = parser.parse_args()

    runs = [(s.name, seed) for s in SIMULATION_SETTINGS for seed in SIMULATION_SEEDS[: args.seeds]]
    runs.append(("auto-mpg", 0))
    parts = Parallel(n_jobs=args.jobs, return_as="generator")(
        delayed(score_run)(dataset, seed) for dataset, seed in runs
    )
    rows = [row for part in tqdm(parts, total=len(runs), desc="runs") for row in part]
    results = pd.DataFrame(rows)
    chosen, reason = choose(results)

    lines = [
        "## Choosing n_ensembles on training data (validation rows, in-distribution)",
        "",
        f"Command: `.venv/bin/python benchmarks/select_tabular_ensemble.py --seeds {args.seeds} "
        f"--jobs {args.jobs}`",
        "",
        f"Machine: {machine_description('at end')}.",
        "",
        f"{len(runs)} runs: the training split of the 12 simulation settings x the first "
        f"{args.seeds} seeds, and of auto-mpg; each cut 75/25 into fit and validation rows. "
        "The shifted test splits are not used.",
        "",
        "| n_ensembles | validation accuracy, mean ± sd over runs | validation log loss, "
        "mean ± sd |",
        "|---:|---:|---:|",
    ]
    for n, group in results.groupby("n_ensembles"):
        acc, loss = group["val_accuracy"], group["val_log_loss"]
        lines.append(
            f"| {n} | {acc.mean():.4f} ± {acc.std(ddof=1):.4f} "
            f"| {loss.mean():.4f} ± {loss.std(ddof=1):.4f} |"
        )
    lines += ["", f"Rule: {reason}.", "", f"**Chosen: n_ensembles = {chosen}.**"]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    results.to_csv(Path(args.out).with_suffix(".csv"), index=False)
    print(text)


if __name__ == "__main__":
    main()
