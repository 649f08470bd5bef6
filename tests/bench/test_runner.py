"""Tests of the tabular benchmark runner (planning, resuming, reports, searches)."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV

from attnmoe.bench.paper import load_paper_per_seed
from attnmoe.bench.runner import (
    AUTO_MPG,
    OURS,
    Run,
    make_model,
    markdown_report,
    parse_params,
    parse_search,
    plan_runs,
    run_benchmark,
)
from attnmoe.tabular import AttentionMoEClassifier, AtypicalHoldout


def test_plan_runs_orders_settings_seeds_models_then_auto_mpg():
    runs = plan_runs(["k=1 corr=0.1 x_noise=0"], 2, ["attnmoe", "mlp"], 1)
    assert [(r.seed, r.model) for r in runs[:4]] == [
        (4951, "attnmoe"), (4951, "mlp"), (5657, "attnmoe"), (5657, "mlp"),
    ]  # fmt: skip
    assert runs[4:] == [Run(AUTO_MPG, 0, "attnmoe"), Run(AUTO_MPG, 0, "mlp")]
    with pytest.raises(ValueError, match="unknown models"):
        plan_runs(None, 1, ["xgboost"], 0)
    with pytest.raises(ValueError, match="unknown setting"):
        plan_runs(["k=2"], 1, ["mlp"], 0)
    with pytest.raises(ValueError, match="has 20 seeds, got 25"):
        plan_runs(None, 25, ["mlp"], 0)
    with pytest.raises(ValueError, match="auto-mpg seeds"):
        plan_runs(None, 1, ["mlp"], -1)


def test_parse_params_and_search():
    assert parse_params(None) == {} and parse_params('{"epochs": 5}') == {"epochs": 5}
    with pytest.raises(ValueError, match="--attnmoe-params is not valid JSON"):
        parse_params("{epochs: 5}")
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_params("[1, 2]")
    with pytest.raises(ValueError, match=r"\['epochz'\] are not parameters"):
        parse_params('{"epochz": 3}')
    with pytest.raises(ValueError, match="not parameters"):
        parse_search('{"epochz": [3]}')
    with pytest.raises(ValueError, match="set by the benchmark"):
        parse_params('{"random_state": 1}')
    assert parse_search('{"epochs": [200, 100]}') == {"epochs": [200, 100]}
    for bad in ('{"epochs": 200}', '{"epochs": []}'):
        with pytest.raises(ValueError, match="non-empty list"):
            parse_search(bad)


def test_make_model_wraps_ours_in_a_search_on_atypical_rows():
    plain = make_model(OURS, 3, {"epochs": 7})
    assert isinstance(plain, AttentionMoEClassifier) and plain.epochs == 7
    assert plain.random_state == 3
    search = make_model(OURS, 3, {"n_heads": 1}, {"epochs": [200, 100]}, holdout=0.2)
    assert isinstance(search, GridSearchCV)
    assert isinstance(search.cv, AtypicalHoldout) and search.cv.test_size == 0.2
    assert search.estimator.n_heads == 1 and search.param_grid == {"epochs": [200, 100]}
    # baselines ignore both
    assert not isinstance(make_model("logistic_regression", 0, None, {"C": [1]}), GridSearchCV)


def test_run_benchmark_appends_resumes_and_reports_choices(tmp_path):
    out = tmp_path / "runs.csv"
    runs = [Run(AUTO_MPG, 0, OURS)]
    search = {"epochs": [2, 1]}
    first = run_benchmark(runs, out, attnmoe_params={"verbose": 0}, progress=False,
                          attnmoe_search=search)  # fmt: skip
    assert list(first.columns)[-1] == "chosen" and len(first) == 1
    assert first["chosen"].iloc[0] in ('{"epochs": 2}', '{"epochs": 1}')
    # resuming skips what is done; a resume without the search is refused
    again = run_benchmark(runs, out, attnmoe_search=search, progress=False)
    assert again.equals(first)
    with pytest.raises(ValueError, match="parameter search"):
        run_benchmark([*runs, Run(AUTO_MPG, 1, OURS)], out, progress=False)
    with pytest.raises(ValueError, match="search grid"):
        run_benchmark(runs, out, attnmoe_search={"epochs": [3]}, progress=False)
    with pytest.raises(ValueError, match="with --attnmoe-params"):  # one configuration a file
        run_benchmark(runs, out, attnmoe_params={"epochs": 1}, attnmoe_search=search)
    report = markdown_report(first, command="attnmoe bench tabular ...")
    assert "Settings chosen on the least typical training rows" in report
    assert f"- {AUTO_MPG}: {first['chosen'].iloc[0]}: 1" in report


def test_report_without_search_has_no_choices():
    results = pd.DataFrame(
        [{"dataset": AUTO_MPG, "seed": 0, "model": OURS, "test_accuracy": 0.7,
          "test_mse": 0.3, "fit_seconds": 1.0}]
    )  # fmt: skip
    report = markdown_report(results)
    assert "| auto-mpg | 0.700 (n=1)" in report
    assert "chosen" not in report


def test_report_counts_every_dataset_against_the_paper():
    setting = "k=1 corr=0.1 x_noise=0"
    rows = [(setting, seed, acc) for seed, acc in ((4951, 0.9), (5657, 0.9))]
    rows += [(AUTO_MPG, 0, 0.1)]
    results = pd.DataFrame(
        [{"dataset": d, "seed": s, "model": OURS, "test_accuracy": a, "test_mse": 0.3,
          "fit_seconds": 1.0} for d, s, a in rows]
    )  # fmt: skip
    report = markdown_report(results)
    # 0.9 beats the paper on those seeds; 0.1 on auto-mpg beats nothing, and is counted apart
    assert "the paper's attention in 1 of 1 settings" in report
    assert "every baseline (ours and the paper's) in 1 of 1." in report
    assert "auto-mpg: attnmoe 0.1000 < the paper's one run 0.7929; < the best" in report
    # the MSE table, next to the paper's per-seed MSE on the same two seeds
    paper = load_paper_per_seed(setting).set_index("seed").loc[[4951, 5657]]
    mse_row = f"| {setting} | 0.300 ± 0.000 (n=2) | {paper['mse_test_at'].mean():.3f} |"
    assert mse_row in report
    # the paper's accuracy for every model it reports, its deep models on auto-mpg
    assert f"| {setting} | {paper['acc_test_at'].mean():.3f} | " in report
    assert "| auto-mpg | 0.793 | 0.657 | 0.721 | 0.657 | 0.700 | 0.707 | 0.764 |" in report
    # a seed the paper never ran: shown, not counted, and said so
    results.loc[len(results)] = ["k=5 corr=0.9 x_noise=0", 1, OURS, 0.5, 0.3, 1.0]
    report = markdown_report(results)
    assert "the paper's attention in 1 of 1 settings" in report
    assert "Not counted (run on seeds the paper has no per-seed results for): k=5" in report


def test_report_ties_the_papers_rounded_numbers():
    # 107 of 140 test cars is 0.764286; the paper publishes its best baseline as 0.7643
    results = pd.DataFrame(
        [{"dataset": AUTO_MPG, "seed": 0, "model": OURS, "test_accuracy": 107 / 140,
          "test_mse": 0.3, "fit_seconds": 1.0}]
    )  # fmt: skip
    tie = "; >= the best baseline, category_embedding (paper) 0.7643."
    assert tie in markdown_report(results)
    results["test_accuracy"] = 106 / 140
    assert "; < the best baseline, category_embedding (paper) 0.7643." in markdown_report(results)


def test_cli_search_runs_baselines_unchanged(tmp_path, capsys):
    from attnmoe.cli import main

    out = tmp_path / "bench"
    args = ["bench", "tabular", "--settings", "--auto-mpg-seeds", "1", "--jobs", "1"]
    args += ["--models", "logistic_regression", "--attnmoe-search", '{"epochs": [200]}']
    assert main([*args, "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs["model"]) == ["logistic_regression"] and runs["chosen"].isna().all()
    assert (out / "runs.search.json").read_text().strip() == '{"epochs": [200]}'
    assert "| auto-mpg | " in (out / "summary.md").read_text()
    assert main([*args[:-1], '{"epochs": 200}', "--out", str(out)]) == 2
    assert "--attnmoe-search: 'epochs' needs a non-empty list" in capsys.readouterr().err


def test_unlabeled_test_rows_reach_attnmoe_only_and_are_recorded(tmp_path, monkeypatch):
    seen = {}
    real_fit = AttentionMoEClassifier.fit

    def spy(self, X, y, X_unlabeled=None):
        seen["unlabeled"] = None if X_unlabeled is None else X_unlabeled.shape
        return real_fit(self, X, y, X_unlabeled=X_unlabeled)

    monkeypatch.setattr(AttentionMoEClassifier, "fit", spy)
    out = tmp_path / "runs.csv"
    runs = [Run(AUTO_MPG, 0, OURS), Run(AUTO_MPG, 0, "logistic_regression")]
    results = run_benchmark(runs, out, attnmoe_params={"epochs": 1}, progress=False,
                            unlabeled_test=True)  # fmt: skip
    assert seen["unlabeled"] == (140, 6)  # the test split's features, not its labels
    assert results["attnmoe_unlabeled_test"].all() and len(results) == 2
    assert "Transductive" in markdown_report(results)
    with pytest.raises(ValueError, match="unlabeled"):  # a resume must keep the protocol
        run_benchmark([*runs, Run(AUTO_MPG, 1, OURS)], out, progress=False)
    with pytest.raises(ValueError, match="parameter search"):
        run_benchmark(runs, tmp_path / "other.csv", unlabeled_test=True,
                      attnmoe_search={"epochs": [1]}, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="not among the models"):
        run_benchmark(runs[1:], tmp_path / "other.csv", unlabeled_test=True, progress=False)


def test_plans_run_each_run_once_and_report_only_the_planned_ones(tmp_path):
    runs = plan_runs([], 0, ["logistic_regression", "logistic_regression"], 2)
    assert runs == [
        Run(AUTO_MPG, 0, "logistic_regression"),
        Run(AUTO_MPG, 1, "logistic_regression"),
    ]
    with pytest.raises(ValueError, match="nothing to run"):
        plan_runs([], 0, ["logistic_regression"], 0)
    out = tmp_path / "runs.csv"
    both = run_benchmark(runs, out, progress=False)
    assert len(both) == 2
    one = run_benchmark(runs[:1], out, progress=False)  # the folder holds more: not reported
    assert one[["dataset", "seed", "model"]].values.tolist() == [
        [AUTO_MPG, 0, "logistic_regression"]
    ]
