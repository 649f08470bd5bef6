"""``attnmoe demo`` (``bench tabular`` and ``bench cost`` run in tests/bench)."""

from attnmoe.cli import main


def test_demo_runs_every_model_on_auto_mpg_and_writes_the_report(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from attnmoe.bench import runner

    planned = []

    def fake_run_benchmark(runs, out_csv, jobs=1):  # the fits are tested in tests/bench
        planned.extend(runs)
        rows = [
            {"dataset": r.dataset, "seed": r.seed, "model": r.model, "test_accuracy": 0.75,
             "test_mse": 0.25, "fit_seconds": 1.0} for r in runs
        ]  # fmt: skip
        return pd.DataFrame(rows)

    monkeypatch.setattr(runner, "run_benchmark", fake_run_benchmark)
    assert main(["demo", "--seeds", "2", "--out", str(tmp_path)]) == 0
    assert {(r.dataset, r.seed, r.model) for r in planned} == {
        (runner.AUTO_MPG, seed, model) for seed in (0, 1) for model in runner.MODEL_NAMES
    }
    assert "ft_transformer" in runner.MODEL_NAMES and "catboost" in runner.MODEL_NAMES
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("Command: `attnmoe demo --seeds 2`")
    assert "| auto-mpg | 0.750 ± 0.000 (n=2) |" in summary
    assert "auto-mpg: attnmoe 0.7500 < the paper's one run 0.7929" in capsys.readouterr().out
