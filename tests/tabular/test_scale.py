"""Tables of real size: the step budget, the engine warning, the device and processes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnmoe.tabular import AttentionMoEClassifier
from attnmoe.tabular.estimators import MAX_STEPS


def _table(n_rows: int, n_columns: int, n_values: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        rng.integers(0, n_values, (n_rows, n_columns)), columns=[f"c{j}" for j in range(n_columns)]
    )
    y = (X["c0"] + rng.integers(0, 2, n_rows)) % 3
    return X, y


def test_the_default_cap_leaves_the_paper_size_at_its_epochs():
    # 2,000 rows of 7 features and the target: 125 steps of 128 copies per epoch
    assert 200 * -(-2000 * 8 // 128) <= MAX_STEPS


def test_the_cap_stops_a_large_table_part_way():
    X, y = _table(300, 3)
    clf = AttentionMoEClassifier(epochs=50, max_steps=25, random_state=0).fit(X, y)
    history = clf.histories_[0]
    assert history.steps == 25
    assert history.epochs_run == 3  # 300 rows x 4 locations / 128: 10 steps per epoch
    assert history.masked_predictions == 2 * 1200 + 5 * 128


def test_no_cap_and_a_high_cap_give_the_same_model():
    X, y = _table(100, 3)
    fits = [
        AttentionMoEClassifier(epochs=3, max_steps=cap, random_state=0).fit(X, y)
        for cap in (None, MAX_STEPS)
    ]
    assert np.array_equal(fits[0].predict_proba(X), fits[1].predict_proba(X))
    assert fits[0].histories_[0].epochs_run == 3


def test_max_steps_is_checked():
    X, y = _table(20, 2)
    with pytest.raises(ValueError, match="max_steps"):
        AttentionMoEClassifier(max_steps=0).fit(X, y)
