"""Choose one option of AttentionMoEClassifier on training rows only (issue 3).

Usage::

    .venv/bin/python benchmarks/select_tabular_option.py --option block \
        --candidates '"bert"' '"pure"' [--seeds 5] [--jobs 2] [--out FILE.md]
    .venv/bin/python benchmarks/select_tabular_option.py --option context_mask_rate \
        --candidates 0 0.15 0.3 --out benchmarks/results/tabular/levers/context_mask0.3/selection.md

``--option X_unlabeled --candidates false true`` compares fitting without and with
the held-out rows' features passed to ``fit`` as ``X_unlabeled`` (their labels
never: the transductive use, where the rows to predict are at hand).

Candidates are JSON values; the first is the paper's (the default), kept unless
another earns its place by a rule fixed in advance, before any test split is
scored:

- data: the *training* split of every simulation setting (first ``--seeds`` seeds)
  and of auto-mpg;
- signal: the least typical quarter of those training rows is held out
  (:class:`attnmoe.tabular.AtypicalHoldout`, the split that leans toward the
  shift; the target is not used to choose it), one model per candidate is fitted
  on the other three quarters with the run's seed and otherwise the paper's
  configuration, and each is scored on the held-out rows;
- rule: the candidate with the highest mean held-out accuracy over all runs
  replaces the first only if its mean paired per-run difference to the first
  exceeds one standard error.

For comparison only (not used by the rule), the same fits are also scored on a
random quarter of the training rows (in-distribution), and on the least typical
quarter with one feature cell per row hidden (a column drawn at random per row,
seeded: how the model copes with missing values at predict time). The shifted
test splits are never loaded. Writes a markdown table and the choice, and a CSV
of every run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from attnmoe.bench.datasets import SIMULATION_SEEDS, SIMULATION_SETTINGS
from attnmoe.bench.machine import machine_description
from attnmoe.bench.runner import AUTO_MPG, load_benchmark_data
from attnmoe.tabular import AttentionMoEClassifier, AtypicalHoldout

# not a parameter: true passes the held-out rows' features (not labels) to fit
UNLABELED = "X_unlabeled"

# the rule reads the first; the others are reported for comparison
SIGNALS = {
    "atypical": "least typical (rule)",
    "random": "random (in-distribution)",
    "atypical_one_missing": "least typical, one feature cell hidden per row",
}


def hide_one_cell(X: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``X`` with one cell per row (its column drawn at random, seeded) set missing."""
    rng = np.random.default_rng(seed)
    hide = np.zeros(X.shape, dtype=bool)
    hide[np.arange(len(X)), rng.integers(0, X.shape[1], len(X))] = True
    return X.mask(hide)  # integer columns become floats holding NaN


def score_run(dataset: str, seed: int, option: str, candidates: list) -> list[dict]:
    """Every candidate on every held-out signal of one training split."""
    data = load_benchmark_data(dataset, seed)
    X, y = data.X_train, data.y_train  # the test split is not touched
    fit_rows, val_rows = next(AtypicalHoldout(test_size=0.25).split(X))
    splits = {
        "atypical": (fit_rows, val_rows),
        "random": train_test_split(np.arange(len(X)), test_size=0.25, random_state=seed),
    }
    rows = []
    for signal, (fit_idx, val_idx) in splits.items():
        X_val, y_val = X.iloc[val_idx], y.iloc[val_idx]
        for candidate in candidates:
            if option == UNLABELED:
                clf = AttentionMoEClassifier(random_state=seed)
                clf.fit(X.iloc[fit_idx], y.iloc[fit_idx], X_unlabeled=X_val if candidate else None)
            else:
                clf = AttentionMoEClassifier(random_state=seed, **{option: candidate})
                clf.fit(X.iloc[fit_idx], y.iloc[fit_idx])
            scores = {signal: clf.score(X_val, y_val)}
            if signal == "atypical":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # the hidden cells, counted
                    partial = hide_one_cell(X_val, seed)
                    if option == UNLABELED and candidate:  # it must not see the hidden cells
                        clf = AttentionMoEClassifier(random_state=seed)
                        clf.fit(X.iloc[fit_idx], y.iloc[fit_idx], X_unlabeled=partial)
                    scores["atypical_one_missing"] = clf.score(partial, y_val)
            rows += [
                {"dataset": dataset, "seed": seed, "signal": name,
                 "candidate": json.dumps(candidate), "val_accuracy": float(value)}
                for name, value in scores.items()
            ]  # fmt: skip
    return rows


def paired_difference(
    results: pd.DataFrame, signal: str, candidate: str, baseline: str
) -> tuple[float, float]:
    """Mean and standard error over runs of candidate - baseline on one signal."""
    wide = results[results["signal"] == signal].pivot_table(
        index=["dataset", "seed"], columns="candidate", values="val_accuracy"
    )
    diff = wide[candidate] - wide[baseline]
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


def choose(results: pd.DataFrame, candidates: list[str]) -> tuple[str, str]:
    """The rule of the module docstring; returns the chosen candidate and the reason."""
    rule = results[results["signal"] == "atypical"]
    means = rule.groupby("candidate")["val_accuracy"].mean()
    best = max(candidates, key=lambda c: (means[c], -candidates.index(c)))
    first = candidates[0]
    if best == first:
        return first, f"{first} has the highest mean on the least typical training rows -> kept"
    mean, se = paired_difference(results, "atypical", best, first)
    chosen = best if mean > se else first
    reason = (
        f"the best, {best}, minus {first} on the least typical training rows: "
        f"{mean:+.4f} (SE {se:.4f}) -> {chosen} kept"
    )
    return chosen, reason


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--option", required=True, help="an AttentionMoEClassifier parameter")
    parser.add_argument("--candidates", nargs="+", required=True, type=json.loads,
                        help="JSON values, the paper's first")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5, help="simulation seeds per setting")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.option == UNLABELED and not (
        args.candidates == [False, True] and all(isinstance(c, bool) for c in args.candidates)
    ):
        parser.error("--option X_unlabeled takes --candidates false true")
    if args.option not in {**AttentionMoEClassifier().get_params(), UNLABELED: None}:
        parser.error(f"--option {args.option!r} is not an AttentionMoEClassifier parameter")
    if len(args.candidates) < 2:
        parser.error("give at least two candidates")

    runs = [(s.name, seed) for s in SIMULATION_SETTINGS for seed in SIMULATION_SEEDS[: args.seeds]]
    runs.append((AUTO_MPG, 0))
    parts = Parallel(n_jobs=args.jobs, return_as="generator")(
        delayed(score_run)(dataset, seed, args.option, args.candidates) for dataset, seed in runs
    )
    results = pd.DataFrame(
        [row for part in tqdm(parts, total=len(runs), desc="runs") for row in part]
    )
    names = [json.dumps(c) for c in args.candidates]
    chosen, reason = choose(results, names)

    script = "benchmarks/select_tabular_option.py"
    command = shlex.join([".venv/bin/python", script, *(sys.argv[1:] if argv is None else argv)])
    first = names[0]
    lines = [
        f"## Choosing {args.option} on training rows (least typical quarter held out)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_description('at end')}.",
        "",
        f"{len(runs)} runs: the training split of the 12 simulation settings x the first "
        f"{args.seeds} seeds, and of auto-mpg. Per run, one model per candidate value of "
        f"`{args.option}` (the paper's configuration otherwise, the run's seed) is fitted on "
        "three quarters of the training rows and scored on the fourth: the least typical "
        "quarter (`AtypicalHoldout`, what the rule reads) and, for comparison, a random "
        "quarter, and the least typical quarter with one feature cell per row hidden (the "
        "column drawn at random per row). The shifted test splits are not used."
        + (
            " `X_unlabeled` true: the held-out quarter's features (never its labels) are "
            "also passed to `fit` as unlabeled rows (with one cell hidden per row for the "
            "hidden-cell signal, so the model never sees the cells it must do without)."
            if args.option == UNLABELED
            else ""
        ),
        "",
        f"Held-out accuracy, mean ± sd over runs, and the paired difference to {first} "
        "(mean ± standard error):",
        "",
        "| held-out rows | " + " | ".join(names) + " | "
        + " | ".join(f"{n} - {first}" for n in names[1:]) + " |",
        "|---|" + "---:|" * (2 * len(names) - 1),
    ]  # fmt: skip
    for signal, label in SIGNALS.items():
        part = results[results["signal"] == signal]
        cells = []
        for name in names:
            acc = part.loc[part["candidate"] == name, "val_accuracy"]
            cells.append(f"{acc.mean():.4f} ± {acc.std(ddof=1):.4f}")
        for name in names[1:]:
            mean, se = paired_difference(results, signal, name, first)
            cells.append(f"{mean:+.4f} ± {se:.4f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    atypical = results[results["signal"] == "atypical"].pivot_table(
        index=["dataset", "seed"], columns="candidate", values="val_accuracy"
    )
    lines += [
        "",
        f"Per dataset, each candidate - {first} on the least typical quarter "
        "(mean over seeds; auto-mpg: one run):",
        "",
        "| dataset | " + " | ".join(f"{n} - {first}" for n in names[1:]) + " |",
        "|---|" + "---:|" * (len(names) - 1),
    ]
    per_dataset = {n: (atypical[n] - atypical[first]).groupby(level=0).mean() for n in names[1:]}
    for dataset in per_dataset[names[1]].index:
        values = " | ".join(f"{per_dataset[n][dataset]:+.4f}" for n in names[1:])
        lines.append(f"| {dataset} | {values} |")
    lines += ["", f"Rule: {reason}.", "", f"**Chosen: {args.option} = {chosen}.**"]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    results.to_csv(args.out.with_suffix(".csv"), index=False)
    print(text)


if __name__ == "__main__":
    main()
