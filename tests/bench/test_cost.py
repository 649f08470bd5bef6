"""The cost knobs benchmark: Pareto logic on hand-made numbers, and a quick real grid."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from attnmoe.bench.cost import (
    CSV_COLUMNS,
    config_label,
    markdown_cost_report,
    pareto_front,
    plan_cost_runs,
    plot_pareto,
    summarize_cost,
)
from attnmoe.cli import main


def test_pareto_front_hand_made():
    # (time, accuracy): b beats a on both; c is slower but more accurate; d is
    # dominated by c (slower, less accurate); e ties c's accuracy but is slower
    cost = [2.0, 1.0, 3.0, 4.0, 5.0]
    value = [0.5, 0.6, 0.7, 0.65, 0.7]
    assert pareto_front(cost, value).tolist() == [False, True, True, False, False]


def test_pareto_front_duplicates_and_single_point():
    # identical points do not dominate each other
    assert pareto_front([1.0, 1.0], [0.5, 0.5]).tolist() == [True, True]
    assert pareto_front([3.0], [0.1]).tolist() == [True]
    with pytest.raises(ValueError):
        pareto_front([1.0, 2.0], [0.5])


def _hand_made_runs() -> pd.DataFrame:
    rows = []
    table = {  # config -> (fit seconds per seed, accuracy per seed)
        (None, 5, 1): ([10.0, 12.0], [0.70, 0.72]),
        (1, 1, 1): ([2.0, 2.2], [0.60, 0.62]),
        (2, 5, 2): ([30.0, 28.0], [0.65, 0.69]),  # slower and worse than dense: off the front
    }
    for dataset in ("auto-mpg", "sim"):
        for (k, h, n), (times, accs) in table.items():
            for seed, (t, a) in enumerate(zip(times, accs, strict=True)):
                rows.append(
                    {
                        "dataset": dataset,
                        "seed": seed,
                        "config": config_label(k, h, n),
                        "top_k": k,
                        "n_heads": h,
                        "n_layers": n,
                        "epochs": 30,
                        "n_parameters": 100 * h * n,
                        "fit_seconds": t,
                        "predict_seconds": 0.01,
                        "baseline_rss_mb": 400.0,
                        "peak_rss_mb": 500.0 + h,
                        "fit_rss_increase_mb": 100.0,
                        "test_accuracy": a,
                    }
                )
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS)
    frame["top_k"] = frame["top_k"].astype("Int64")
    return frame


def test_summary_report_and_plot(tmp_path):
    summary = summarize_cost(_hand_made_runs())
    assert len(summary) == 6
    front = summary.set_index(["dataset", "config"])["on_front"]
    assert front[("sim", "top_k=dense heads=5 layers=1")]
    assert front[("sim", "top_k=1 heads=1 layers=1")]
    assert not front[("sim", "top_k=2 heads=5 layers=2")]
    dense = summary[summary["config"] == "top_k=dense heads=5 layers=1"].iloc[0]
    assert dense["fit_seconds"] == pytest.approx(11.0)
    assert dense["accuracy"] == pytest.approx(0.71)
    assert dense["accuracy_sd"] == pytest.approx(np.std([0.70, 0.72], ddof=1))

    report = markdown_cost_report(summary, command="attnmoe bench cost", machine="test box")
    assert "Command: `attnmoe bench cost`" in report
    assert "test box" in report
    assert "| dense | 5 | 1 |" in report
    assert report.count("★") == 4  # two configs on each dataset's front

    png = plot_pareto(summary, tmp_path / "front.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_orders_and_validates():
    runs = plan_cost_runs(
        top_k=(None, 1), n_heads=(1,), n_layers=(1,), seeds=1, auto_mpg_seeds=1, epochs=1
    )
    assert [r.dataset for r in runs][:2] == ["auto-mpg", "auto-mpg"]
    assert {r.config for r in runs} == {"top_k=dense heads=1 layers=1", "top_k=1 heads=1 layers=1"}
    with pytest.raises(ValueError, match="unknown setting"):
        plan_cost_runs(settings=("k=7",))
    twice = plan_cost_runs(
        top_k=(None, 1, 1), n_heads=(1, 1), n_layers=(1,), seeds=1, auto_mpg_seeds=1, epochs=1
    )
    assert len(twice) == len(runs) == 4  # a knob value named twice runs once
    for bad in ({"seeds": -1}, {"auto_mpg_seeds": -1}, {"seeds": 21}):
        with pytest.raises(ValueError, match="seeds must be"):
            plan_cost_runs(**bad)
    with pytest.raises(ValueError, match="nothing to run"):
        plan_cost_runs(settings=(), auto_mpg_seeds=0)


def test_quick_grid_end_to_end(tmp_path, capsys):
    start = time.perf_counter()
    # --settings with nothing after it: auto-mpg only, so the two fresh processes stay short
    code = main(["bench", "cost", "--quick", "--settings", "--out", str(tmp_path)])
    elapsed = time.perf_counter() - start
    assert code == 0
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs.columns) == CSV_COLUMNS
    assert len(runs) == 2
    assert set(runs["config"]) == {"top_k=dense heads=1 layers=1", "top_k=1 heads=1 layers=1"}
    assert (runs["fit_seconds"] > 0).all() and (runs["predict_seconds"] > 0).all()
    # a fresh process per run: the peak includes torch, and the fit adds to it
    assert (runs["peak_rss_mb"] >= runs["baseline_rss_mb"]).all()
    assert runs["test_accuracy"].between(0, 1).all()
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    summary = (tmp_path / "summary.md").read_text()
    assert "Command: `attnmoe bench cost --top-k none 1" in summary
    assert "cores" in summary and "load average" in summary
    assert "### auto-mpg" in summary
    # ~10-20 s on 2 idle cores (two fresh processes, each importing torch); the bound
    # only catches a runaway grid, it is loose so that a busy machine does not fail it
    assert elapsed < 120, f"quick grid took {elapsed:.1f}s"

    # rerunning resumes: nothing left to fit, the table is unchanged
    assert main(["bench", "cost", "--quick", "--settings", "--out", str(tmp_path)]) == 0
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 2
    capsys.readouterr()
