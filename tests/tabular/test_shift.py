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


def test_typicality_is_smoothed_pointwise_mutual_information():
    X = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["u", "u", "v", "u"]})
    # 2 x 2 values, smoothing 1: Z = 4 + 4; p(x, u) = 3/8, p(x) = 4/8, p(u) = 5/8
    expected = np.log([3 * 8 / (4 * 5), 3 * 8 / (4 * 5), 2 * 8 / (4 * 3), 2 * 8 / (4 * 5)])
    assert np.allclose(pair_typicality(X, smoothing=1.0), expected)
    # counts only, as smoothing vanishes
    assert pair_typicality(X, smoothing=1e-9)[2] == pytest.approx(np.log(2), abs=1e-6)


def test_each_pair_is_judged_on_its_own_values():
    rng = np.random.default_rng(0)
    a = np.tile([0, 0, 1, 1], 100).astype(str)
    b = np.tile([0, 1, 0, 1], 100).astype(str)  # independent of a, balanced
    wide = rng.integers(0, 50, 400).astype(str)  # many values: must not touch the (a, b) pair
    alone = pair_typicality(pd.DataFrame({"a": a, "b": b}))
    assert np.allclose(alone, 0.0)
    three = pair_typicality(pd.DataFrame({"a": a, "b": b, "w": wide}))
    with_a = pair_typicality(pd.DataFrame({"a": a, "w": wide}))
    with_b = pair_typicality(pd.DataFrame({"b": b, "w": wide}))
    assert np.allclose(3 * three, alone + with_a + with_b)


def test_many_distinct_values_and_object_arrays():
    n = 20_000
    ids = np.array([f"id{k}" for k in range(n)])  # an ID column: no V x V table is built
    other = np.arange(n) % 3
    scores = pair_typicality(pd.DataFrame({"id": ids, "other": other.astype(str)}))
    assert scores.shape == (n,) and np.isfinite(scores).all()
    # a mixed frame's .to_numpy() is an object array: its float column is still binned
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"s": rng.choice(["p", "q"], 100), "f": rng.normal(size=100)})
    assert np.allclose(pair_typicality(frame.to_numpy()), pair_typicality(frame))
    assert len(np.unique(pair_typicality(frame))) > 2


def test_typicality_edge_cases():
    assert np.array_equal(pair_typicality(pd.DataFrame({"a": [1, 2, 3]})), np.zeros(3))
    with pytest.raises(ValueError, match="no rows"):
        pair_typicality(pd.DataFrame({"a": [], "b": []}))
    with pytest.raises(ValueError, match="smoothing"):
        pair_typicality(pd.DataFrame({"a": [1, 2], "b": [1, 2]}), smoothing=0)
    with pytest.raises(ValueError, match=r"duplicated column names: \['a'\]"):
        pair_typicality(pd.DataFrame([[1, 2], [2, 1]], columns=["a", "a"]))
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


def test_grid_search_validates_on_the_held_out_rows():
    X, _ = _paired_table(n=120, n_odd=12)
    y = X["a"].map({"0": "low", "1": "low", "2": "high", "3": "high"})
    cv = AtypicalHoldout(0.1)
    search = GridSearchCV(
        AttentionMoEClassifier(epochs=1, random_state=0, verbose=0),
        {"epochs": [2, 1]},
        cv=cv,
        scoring="accuracy",
    ).fit(X, y)
    assert search.n_splits_ == 1
    ((train, test),) = list(cv.split(X))
    for epochs, score in zip((2, 1), search.cv_results_["split0_test_score"], strict=True):
        model = AttentionMoEClassifier(epochs=epochs, random_state=0, verbose=0)
        model.fit(X.iloc[train], y.iloc[train])
        assert model.score(X.iloc[test], y.iloc[test]) == pytest.approx(score)
    assert "AtypicalHoldout(n_bins=10, test_size=0.1)" == repr(cv)
