"""The summary: means over seeds, the paired gap to the best alternative, the verdict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from attnmoe.pilot.results import summarize, verdict_lines
from attnmoe.pilot.run import RUN_COLUMNS


def _runs(accuracy: dict[str, list[float]], fit: dict[str, float]) -> pd.DataFrame:
    rows = []
    for model, values in accuracy.items():
        for seed, value in enumerate(values):
            row = dict.fromkeys(RUN_COLUMNS, 0.0)
            row.update(model=model, seed=seed, accuracy=value, fit_seconds=fit[model],
                       chosen="", group_accuracy=json.dumps({"g": value}))  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def test_the_gap_is_paired_over_seeds_against_the_best_alternative():
    runs = _runs(
        {"attnmoe": [0.80, 0.70, 0.90], "logistic_regression": [0.75, 0.70, 0.80],
         "catboost": [0.60, 0.60, 0.60], "majority": [0.99, 0.99, 0.99]},
        {"attnmoe": 6.0, "logistic_regression": 2.0, "catboost": 1.0, "majority": 0.1},
    )  # fmt: skip
    summary = summarize(runs)
    assert summary["best_alternative"] == "logistic_regression"  # the floor never is
    gap = summary["gaps"][0]
    diff = np.array([0.05, 0.0, 0.10])
    assert gap["gap"] == pytest.approx(diff.mean())
    assert gap["se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(3))
    assert gap["fit_time_ratio"] == pytest.approx(3.0)
    assert summary["models"]["attnmoe"]["accuracy"]["sd"] == pytest.approx(0.1)
    assert summary["verdict"] == [
        "On this table attnmoe is 5.0 ± 2.9 accuracy points above your best alternative "
        "(logistic_regression) (within the noise of 3 seeds) and costs 3.0× its training time."
    ]


def test_the_verdict_says_below_and_leaves_out_the_noise_when_clear():
    line = verdict_lines([{"model": "attnmoe", "versus": "catboost", "gap": -0.1, "se": 0.01,
                           "seeds": 5, "fit_time_ratio": 12.04}])  # fmt: skip
    assert line == ["On this table attnmoe is 10.0 ± 1.0 accuracy points below your best "
                    "alternative (catboost) and costs 12.0× its training time."]  # fmt: skip
