"""Tests of the baseline factories (small grids and few epochs keep them fast)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from attnmoe.bench.baselines import (
    BASELINES,
    GB_GRID,
    MLP_GRID,
    RF_GRID,
    FTTransformerClassifier,
    LegacyLogisticRegression,
    make_baseline,
)
from attnmoe.bench.datasets import make_simulation

# Options that shrink each baseline to a fraction of a second.
FAST = {
    "logistic_regression": {},
    "random_forest": {"param_grid": {"n_estimators": [10], "max_depth": [3, None]}, "cv_splits": 2},
    "gradient_boosting": {
        "param_grid": {"n_estimators": [5], "max_depth": [1], "learning_rate": [0.1]},
        "cv_splits": 2,
    },
    "mlp": {"param_grid": {"hidden_layer_sizes": [(8,)]}, "cv_splits": 2, "max_iter": 30},
    "catboost": {"iterations": 20},
    "ft_transformer": {"n_blocks": 1, "max_epochs": 2, "batch_size": 64},
}


@pytest.fixture(scope="module")
def tiny():
    split = make_simulation(4951, k=1, corr=0.1, x_noise=0.5, n=2000)
    # A small subset keeps every fit fast; the codes stay 0..9.
    return split.X_train.iloc[:300], split.y_train.iloc[:300], split.X_test.iloc[:200]


def test_registry_names():
    assert set(BASELINES) == set(FAST)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("svm")


@pytest.mark.parametrize("name", sorted(FAST))
def test_baseline_fits_and_predicts(name, tiny):
    X, y, X_test = tiny
    model = make_baseline(name, random_state=0, n_jobs=1, **FAST[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the tiny fits
        model.fit(X, y)
        pred = model.predict(X_test)
        proba = model.predict_proba(X_test)
    assert pred.shape == (len(X_test),)
    assert set(np.unique(pred)) <= set(np.unique(y))
    assert proba.shape == (len(X_test), len(np.unique(y)))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # The estimator is clonable, as scikit-learn tooling expects.
    clone(model)


def test_grid_searches_follow_the_paper():
    for name, grid in (
        ("random_forest", RF_GRID),
        ("gradient_boosting", GB_GRID),
        ("mlp", MLP_GRID),
    ):
        search = make_baseline(name, random_state=3, n_jobs=2)
        assert isinstance(search, GridSearchCV)
        assert search.scoring == "accuracy" and search.n_jobs == 2
        assert isinstance(search.cv, StratifiedKFold)
        assert search.cv.n_splits == 5 and search.cv.shuffle and search.cv.random_state == 3
        assert search.param_grid == {f"clf__{k}": v for k, v in grid.items()}
        encoder = search.estimator.named_steps["onehot"]
        assert encoder.drop == "first" and encoder.handle_unknown == "ignore"
    assert RF_GRID == {
        "criterion": ["gini", "entropy"],
        "n_estimators": [50, 100, 200],
        "max_depth": [1, 3, None],
    }
    assert GB_GRID == {
        "learning_rate": [0.01, 0.1, 1],
        "n_estimators": [50, 100, 200],
        "max_depth": [1, 3, 5],
    }
    assert MLP_GRID == {
        "hidden_layer_sizes": [(50,), (100,), (100, 50)],
        "alpha": [1e-4, 1e-3, 1e-2],
        "learning_rate": ["constant", "adaptive"],
    }
    mlp = make_baseline("mlp").estimator.named_steps["clf"]
    assert mlp.learning_rate_init == 0.01 and mlp.max_iter == 2000
    lr = make_baseline("logistic_regression")
    assert isinstance(lr, Pipeline) and lr.named_steps["clf"].max_iter == 2000


def test_one_hot_pipelines_tolerate_unseen_categories(tiny):
    X, y, X_test = tiny
    model = make_baseline("logistic_regression").fit(X, y)
    unseen = X_test.copy()
    unseen.iloc[0, 0] = 99
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "unknown categories ... encoded as all zeros"
        assert model.predict(unseen).shape == (len(unseen),)


def test_legacy_logistic_regression_reaches_the_same_optimum():
    # Same penalised likelihood as current scikit-learn (up to the 1/n scale):
    # solved tightly, both give the same probabilities.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    for n_classes in (2, 3):
        y = (X[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
        if n_classes == 3:
            y = y + (X[:, 1] > 0.5)
        legacy = LegacyLogisticRegression(tol=1e-10, max_iter=10_000).fit(X, y)
        current = LogisticRegression(tol=1e-12, max_iter=10_000).fit(X, y)
        np.testing.assert_allclose(legacy.predict_proba(X), current.predict_proba(X), atol=1e-4)
        np.testing.assert_array_equal(legacy.predict(X), current.predict(X))


def test_ft_transformer_seeded_fit_is_reproducible(tiny):
    X, y, X_test = tiny
    torch.manual_seed(1234)
    before = torch.rand(3)
    torch.manual_seed(1234)

    def fit(seed):
        return make_baseline("ft_transformer", random_state=seed, **FAST["ft_transformer"]).fit(
            X, y
        )

    a, b, c = fit(7), fit(7), fit(8)
    # The caller's global torch RNG is not consumed by fitting.
    assert torch.equal(torch.rand(3), before)
    np.testing.assert_array_equal(a.predict_proba(X_test), b.predict_proba(X_test))
    assert not np.array_equal(a.predict_proba(X_test), c.predict_proba(X_test))
    assert len(a.history_) == 2 and 0 <= a.best_epoch_ < 2


def test_ft_transformer_handles_unseen_and_continuous_columns(tiny):
    X, y, X_test = tiny
    X = X.assign(x_num=np.linspace(0.0, 1.0, len(X)))
    X_test = X_test.assign(x_num=0.5)
    model = FTTransformerClassifier(
        n_blocks=1,
        max_epochs=1,
        cat_features=["x0", "x1", "x2", "x3", "x4"],
        random_state=0,
        n_threads=1,  # tiny model: more threads only add overhead
    ).fit(X, y)
    assert model.cont_columns_ == ["x_num"]
    unseen = X_test.copy()
    unseen.loc[unseen.index[0], "x0"] = 99
    assert model.predict(unseen).shape == (len(unseen),)


def test_catboost_accepts_string_labels_and_numpy(tiny):
    X, y, X_test = tiny
    labels = pd.Series(np.where(y > 4, "high", "low"))
    model = make_baseline("catboost", iterations=5).fit(X.to_numpy(), labels)
    assert set(model.predict(X_test.to_numpy())) <= {"high", "low"}
