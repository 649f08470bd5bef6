"""Tests of the shift-leaning validation split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV

from attnmoe.tabular import AttentionMoEClassifier, AtypicalHoldout, pair_typicality


def _paired_table(n: int = 200, n_odd: int = 10, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Columns a and b equal on every row but the last ``n_odd``; c independent."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, n)
    b = a.copy()
    b[-n_odd:] = (a[-n_odd:] + 1 + rng.integers(0, 3, n_odd)) % 4  # never equal to a
    c = rng.integers(0, 3, n)
    return pd.DataFrame({"a": a.astype(str), "b": b.astype(str), "c": c.astype(str)}), np.arange(
        n - n_odd, n
    )


def test_rows_that_break_a_pairing_score_lowest():
    X, odd = _paired_table()
    scores = pair_typicality(X)
    assert scores.shape == (len(X),)
    assert set(np.argsort(scores)[: len(odd)]) == set(odd)
    assert scores[odd].max() < np.delete(scores, odd).min()


def test_typicality_is_pointwise_mutual_information_of_the_pairs():
    X = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["u", "u", "v", "u"]})
    scores = pair_typicality(X, smoothing=1e-9)  # counts only, to the precision shown
    # row 0: p(x, u) = 2/4, p(x) = 2/4, p(u) = 3/4 -> log(4/3)
    assert scores[0] == pytest.approx(np.log(4 / 3), abs=1e-6)
    # row 2: p(y, v) = 1/4, p(y) = 2/4, p(v) = 1/4 -> log 2
    assert scores[2] == pytest.approx(np.log(2), abs=1e-6)


def test_typicality_edge_cases():
    assert np.array_equal(pair_typicality(pd.DataFrame({"a": [1, 2, 3]})), np.zeros(3))
    with pytest.raises(ValueError, match="no rows"):
        pair_typicality(pd.DataFrame({"a": [], "b": []}))
    with pytest.raises(ValueError, match="smoothing"):
        pair_typicality(pd.DataFrame({"a": [1, 2], "b": [1, 2]}), smoothing=0)
    # arrays and numeric columns (binned) with missing values are accepted
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    X[3, 1] = np.nan
    assert np.isfinite(pair_typicality(X)).all()


def test_holdout_takes_the_least_typical_rows():
    X, odd = _paired_table(n=200, n_odd=10)
    cv = AtypicalHoldout(test_size=0.05)
    assert cv.get_n_splits(X) == 1
    ((train, test),) = list(cv.split(X))
    assert np.array_equal(test, odd)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(X)))
    # deterministic
    ((train2, test2),) = list(cv.split(X))
    assert np.array_equal(test, test2) and np.array_equal(train, train2)


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.5, 0.001])
def test_holdout_rejects_bad_sizes(test_size):
    X, _ = _paired_table(n=100)
    with pytest.raises(ValueError, match="test_size"):
        list(AtypicalHoldout(test_size).split(X))


def test_holdout_needs_x():
    with pytest.raises(ValueError, match="needs X"):
        list(AtypicalHoldout()._iter_test_indices(None))


def test_grid_search_with_the_estimator():
    X, _ = _paired_table(n=120, n_odd=12)
    y = X["a"].map({"0": "low", "1": "low", "2": "high", "3": "high"})
    search = GridSearchCV(
        AttentionMoEClassifier(epochs=1, random_state=0, verbose=0),
        {"epochs": [2, 1]},
        cv=AtypicalHoldout(0.1),
        scoring="accuracy",
    )
    search.fit(X, y)
    assert search.best_params_["epochs"] in (1, 2)
    assert search.predict(X.head(3)).shape == (3,)
