"""Tests of the packaged published numbers."""

from __future__ import annotations

import pytest

from attnmoe.bench.datasets import SIMULATION_SEEDS, SIMULATION_SETTINGS
from attnmoe.bench.paper import PER_SEED_MODELS, load_paper_per_seed, load_paper_results


def test_paper_results_table():
    results = load_paper_results()
    assert list(results.columns) == ["table", "setting", "model", "metric", "mean", "sd", "n_runs"]
    simulation = results[results["table"] == "3-4 simulation"]
    # 12 settings x 5 models x 2 metrics, each over the 20 seeds.
    assert len(simulation) == 12 * 5 * 2
    assert set(simulation["model"]) == set(PER_SEED_MODELS.values())
    assert (simulation["n_runs"] == 20).all()
    auto = results[results["table"] == "5 auto-mpg"]
    assert {"logistic_regression", "attention", "ft_transformer"} <= set(auto["model"])


@pytest.mark.parametrize("setting", SIMULATION_SETTINGS, ids=lambda s: s.name)
def test_per_seed_files_agree_with_the_summary_table(setting):
    per_seed = load_paper_per_seed(setting)
    assert tuple(per_seed["seed"]) == SIMULATION_SEEDS
    results = load_paper_results()
    rows = results[results["setting"] == setting.name]
    for code, model in PER_SEED_MODELS.items():
        for metric, column in (("test_accuracy", "acc"), ("test_mse", "mse")):
            published = rows[(rows["model"] == model) & (rows["metric"] == metric)]
            values = per_seed[f"{column}_test_{code}"]
            assert values.mean() == pytest.approx(float(published["mean"].iloc[0]), abs=1e-3)


def test_per_seed_lookup_by_name_or_file():
    setting = SIMULATION_SETTINGS[3]
    by_setting = load_paper_per_seed(setting)
    assert by_setting.equals(load_paper_per_seed(setting.name))
    assert by_setting.equals(load_paper_per_seed(setting.paper_file))
    assert "acc_test_lr" in by_setting.columns and "mse_train_at" in by_setting.columns
    assert len(by_setting) == 20
    with pytest.raises(ValueError, match="unknown simulation setting"):
        load_paper_per_seed("k=2 corr=0.5 x_noise=0")
