"""attnmoe.bench.keras_reruns: the counting behind docs/benchmarks.md's reading of the
accuracy targets."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnmoe.bench import keras_reruns as collect
from attnmoe.bench.datasets import SIMULATION_SEEDS
from attnmoe.bench.paper import load_paper_per_seed

ONE_AND_THREE = ("paper_20seeds", "three_averaged_20seeds")


def test_poisson_binomial_matches_enumeration() -> None:
    p = np.array([0.1, 0.5, 0.9, 0.35, 0.0])
    exact = np.zeros(len(p) + 1)
    for outcome in itertools.product([0, 1], repeat=len(p)):
        exact[sum(outcome)] += np.prod([q if o else 1 - q for q, o in zip(p, outcome, strict=True)])
    np.testing.assert_allclose(collect.poisson_binomial(p), exact, atol=1e-12)
    assert collect.poisson_binomial(np.full(12, 0.5))[12] == pytest.approx(0.5**12)


def _write(folder: Path, rows: list[tuple]) -> None:
    folder.mkdir(parents=True)
    columns = ["dataset", "seed", "model", "test_accuracy", "fit_seconds"]
    pd.DataFrame(rows, columns=columns).to_csv(folder / "runs.csv", index=False)


def test_report_counts_against_the_papers_per_seed_results(tmp_path: Path) -> None:
    # Keras exactly on the paper's per-seed results, attnmoe 0.01 above them.
    setting = "k=5 corr=0.9 x_noise=0"
    seeds = list(SIMULATION_SEEDS[:4])
    paper = load_paper_per_seed(setting).set_index("seed").loc[seeds, "acc_test_at"]
    _write(
        tmp_path / "keras_reruns" / "x",
        [(setting, s, "keras", paper[s], 1.0) for s in seeds]
        + [(setting, s, "attnmoe", 0.0, 1.0) for s in seeds],
    )
    for folder in ONE_AND_THREE:
        _write(tmp_path / folder, [(setting, s, "attnmoe", paper[s] + 0.01, 1.0) for s in seeds])
    text = collect.report(tmp_path, "cmd")
    row = next(line for line in text.splitlines() if line.startswith(f"| {setting} |"))
    assert row.endswith("| +0.0000 ± 0.0000 | yes | yes | yes | yes |")
    assert "reaches the published column in 1 and the best baseline in 1" in text
    # one setting: a replica meets "all settings" with 0.5^1; attnmoe's spread is zero here
    assert "probability 0.5^1 = 0.5." in text
    assert "at least 1 with probability 1.00" in text
    # a Keras rerun that misses one of attnmoe's seeds shows as "-"
    other = "k=1 corr=0.1 x_noise=0"
    _write(tmp_path / "keras_reruns" / "y", [(other, seeds[0], "keras", 0.4, 1.0)])
    for folder in ONE_AND_THREE:
        runs = pd.read_csv(tmp_path / folder / "runs.csv")
        extra = pd.DataFrame([(other, s, "attnmoe", 0.5, 1.0) for s in seeds[:2]])
        extra.columns = runs.columns
        pd.concat([runs, extra]).to_csv(tmp_path / folder / "runs.csv", index=False)
    text = collect.report(tmp_path, "cmd")
    assert f"| {other} | 2 | - | 0.500 ± 0.000 |" in text
    assert "in the 1 of 2 settings it covers" in text and "best baseline in 2 of 2." in text


def test_auto_mpg_chance_uses_the_predictive_spread_of_a_new_10_seed_mean(
    tmp_path: Path,
) -> None:
    from scipy.stats import t as student_t

    accuracies = [0.70, 0.76] * 10  # mean 0.73
    _write(
        tmp_path / "keras_reruns" / "auto_mpg",
        [("auto-mpg", s, "keras", a, 1.0) for s, a in enumerate(accuracies)],
    )
    setting, seed = "k=5 corr=0.9 x_noise=0", SIMULATION_SEEDS[0]
    for folder in ONE_AND_THREE:
        _write(tmp_path / folder, [(setting, seed, "attnmoe", 0.4, 1.0)])
    text = collect.report(tmp_path, "cmd")
    sd = np.std(accuracies, ddof=1)
    se = sd * np.sqrt(1 / 10 + 1 / 20)  # a new 10-fit mean around an estimated 20-fit mean
    chance = student_t.sf((0.80 - 0.73) / se, df=19)
    assert f"predictive standard error of {se:.4f}" in text
    assert f"reached with probability {chance:.1g} (Student's t, 19 degrees" in text
    assert "0 of 20 single fits reach 0.80" in text
    assert "(the paper's one run: 0.7929); 0 of 20" in text  # attnmoe: no auto-mpg runs here
