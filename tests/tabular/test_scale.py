"""Tables of real size: the step budget, the engine warning, the device and processes."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.tabular import AttentionMoEClassifier
from attnmoe.tabular.estimators import MAX_STEPS, SlowEngineWarning
from attnmoe.training.fused import fused_path


def _table(n_rows: int, n_columns: int, n_values: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        rng.integers(0, n_values, (n_rows, n_columns)), columns=[f"c{j}" for j in range(n_columns)]
    )
    y = (X["c0"] + rng.integers(0, 2, n_rows)) % 3
    return X, y


def test_the_default_cap_leaves_the_paper_size_at_its_epochs():
    # 2,000 rows of 23 features and the target: 375 steps of 128 copies per epoch
    assert 200 * -(-2000 * 24 // 128) <= MAX_STEPS


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


def test_auto_warns_once_when_it_must_take_the_torch_engine():
    X, y = _table(120, 3)
    with pytest.warns(SlowEngineWarning) as caught:
        AttentionMoEClassifier(n_layers=2, epochs=2, n_ensembles=2, random_state=0).fit(X, y)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message
    assert "n_layers=2" in message  # the reason
    # two layers take whole rows: 120 rows / (128 // 4) = 4 steps, x 2 epochs x 2 members
    assert re.search(r"projected \d+ (s|min|h) for 16 steps", message)
    assert caught[0].filename == __file__  # points at the caller's fit


def test_a_model_past_the_fused_limit_warns_with_the_size(monkeypatch):
    # the table's size no longer limits the fused engine (its tokens path); the width does
    import attnmoe.training.fused.engine as engine

    monkeypatch.setattr(engine, "MAX_FUSED_D_MODEL", 10)
    X, y = _table(60, 3)
    with pytest.warns(SlowEngineWarning, match=r"d_model=20 is above its 10"):
        AttentionMoEClassifier(epochs=1, random_state=0).fit(X, y)


def test_many_columns_of_few_values_train_on_the_fused_engine(capsys):
    """Issue 24: 22 columns, one of 46 values (a test score as whole numbers, a knot at
    each level): past the old gate-table limit, fused (its tokens path)."""
    X, y = _table(230, 22, n_values=2)
    X["c21"] = np.arange(230) % 46
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowEngineWarning)
        clf = AttentionMoEClassifier(epochs=1, max_categories=50, verbose=1, random_state=0)
        clf.fit(X, y)
    model = clf.models_[0]
    length, words = 23, model.config.vocab_size + 1
    assert length * 5 * length * words > 2**16  # the gate table: past the old limit
    assert fused_path(model, length) == "tokens"
    assert "MLM fused:" in capsys.readouterr().err


def test_the_default_model_of_64_columns_of_256_values_trains_fused(capsys):
    """Issue 24, item 1: the estimator's default model of a table of 64 columns of 256
    distinct values each trains on the fused engine, without a SlowEngineWarning."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({f"c{j}": rng.permutation(300) % 256 for j in range(64)}).astype(str)
    y = (rng.integers(0, 256, 300) % 3).astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowEngineWarning)
        clf = AttentionMoEClassifier(epochs=1, verbose=1, random_state=0).fit(X, y)
    model = clf.models_[0]
    assert model.config.max_len == 65 and model.config.vocab_size >= 256
    assert fused_path(model, 65) == "tokens"
    assert "MLM fused:" in capsys.readouterr().err


@pytest.mark.parametrize("params", [{}, {"engine": "torch"}, {"engine": "fused"}])
def test_no_warning_where_the_engine_is_the_fast_one_or_chosen(params):
    X, y = _table(60, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowEngineWarning)
        AttentionMoEClassifier(epochs=1, random_state=0, **params).fit(X, y)


@pytest.mark.parametrize(("params", "engine"), [({}, "fused"), ({"n_layers": 2}, "torch")])
def test_verbose_says_which_engine_trains(params, engine, capsys):
    X, y = _table(60, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowEngineWarning)
        AttentionMoEClassifier(epochs=1, verbose=1, random_state=0, **params).fit(X, y)
    assert f"MLM {engine}:" in capsys.readouterr().err  # the progress bar names it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_gpu_fit_predicts_as_the_cpu_fit():
    X, y = _table(200, 4)
    params = {"epochs": 3, "dropout": 0.0, "random_state": 0}  # dropout draws per device
    cpu = AttentionMoEClassifier(engine="torch", **params).fit(X, y)
    gpu = AttentionMoEClassifier(device="cuda", **params).fit(X, y)
    assert next(gpu.models_[0].parameters()).device.type == "cpu"  # kept for prediction
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-4)
    assert np.array_equal(gpu.predict(X), cpu.predict(X))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_one_line_error():
    X, y = _table(20, 2)
    with pytest.raises(ValueError, match=r"device='cuda': torch sees no CUDA device") as err:
        AttentionMoEClassifier(device="cuda").fit(X, y)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("device", ["gpu", "mps", "cuda:x"])
def test_an_unknown_device_is_refused(device):
    X, y = _table(20, 2)
    with pytest.raises(ValueError, match="device="):
        AttentionMoEClassifier(device=device).fit(X, y)


def _proba_after(tmp_path=None, **params) -> np.ndarray:
    X, y = _table(160, 3)
    clf = AttentionMoEClassifier(
        epochs=2,
        batch_size=64,
        learning_rate=1e-2,
        dropout=0.0,
        n_ensembles=1,
        random_state=0,
        **params,
    ).fit(X, y)
    return clf, clf.predict_proba(X)


def test_two_processes_fit_the_model_of_one(tmp_path):
    one, p1 = _proba_after(checkpoint_dir=str(tmp_path))  # one process, the same trainer
    two, p2 = _proba_after(nproc=2)
    assert one.histories_[0].steps == two.histories_[0].steps == 2 * (160 * 4 // 64)
    assert two.histories_[0].world_size == 2
    np.testing.assert_allclose(p1, p2, atol=1e-5)
    assert (tmp_path / "step-000000020").is_dir()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"validation_fraction": 0.2}, "validation_fraction"),
        ({"target_weight": 2.0}, "target_weight"),
        ({"average_last": 0.5}, "average_last"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
        ({"engine": "fused"}, "engine='fused'"),
    ],
)
def test_the_distributed_trainer_refuses_what_it_cannot_do(tmp_path, params, match):
    X, y = _table(60, 3)
    with pytest.raises(ValueError, match=match):
        AttentionMoEClassifier(checkpoint_dir=str(tmp_path), **params).fit(X, y)
