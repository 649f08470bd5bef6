"""``attnmoe pilot`` end to end: the files, resuming, refusing, interrupting, Parquet, --compare."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from attnmoe.cli import main
from attnmoe.pilot import run as pilot_run
from tests.pilot.conftest import FAST, MODELS, small_table


def test_a_pilot_writes_its_page_its_numbers_and_every_run(pilot_dir):
    runs = pd.read_csv(pilot_dir / "runs.csv")
    assert sorted(zip(runs["model"], runs["seed"], strict=True)) == sorted(
        (m, s) for m in MODELS for s in (0, 1)
    )
    content = json.loads((pilot_dir / "pilot.json").read_text())
    summary = content["summary"]
    assert content["n_new"] == (small_table().region == "south").sum()
    assert summary["best_alternative"] in ("logistic_regression", "hist_gradient_boosting")
    assert [g["model"] for g in summary["gaps"]] == [
        "attnmoe", "attnmoe-tuned", "attnmoe-transductive"
    ]  # fmt: skip
    # the gap is attnmoe's per-seed accuracy minus the best alternative's, averaged
    best = runs[runs.model == summary["best_alternative"]].set_index("seed")["accuracy"]
    ours = runs[runs.model == "attnmoe"].set_index("seed")["accuracy"]
    assert summary["gaps"][0]["gap"] == pytest.approx((ours - best).mean())
    assert summary["verdict"][0].startswith("On this table attnmoe is ")
    for name, model in summary["models"].items():
        assert model["seeds"] == 2
        for cost in ("fit_seconds", "predict_seconds_per_1000", "peak_memory_mb", "size_bytes"):
            assert model[cost]["mean"] >= 0, (name, cost)
        assert set(model["group_accuracy"]) == {"f", "m"}
    assert summary["models"]["attnmoe"]["size_bytes"]["mean"] > 1000  # a saved folder
    assert set(summary["models"]["attnmoe-tuned"]["chosen"]) <= {
        json.dumps(c, sort_keys=True) for c in ({}, {"n_heads": 1}, {"n_ensembles": 1})
    }
    assert content["explain"]["moved"] and "audit_flagged" in content["explain"]
    assert (pilot_dir / "pilot.html").read_text().startswith("<!DOCTYPE html>")


def _argv(root, out, *extra):
    return ["pilot", str(root / "table.csv"), "--target", "label", "--split-by", "region",
            "--train", "north", "east", "--group", "sex", "--drop", "day", "--seeds", "2",
            "--params", FAST, "--models", *MODELS, "--out", str(out), "--quiet",
            *extra]  # fmt: skip


def test_a_rerun_resumes_and_other_settings_are_refused(pilot_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(pilot_dir, out)
    runs = pd.read_csv(out / "runs.csv")
    runs[runs.model != "logistic_regression"].to_csv(out / "runs.csv", index=False)
    fitted = []
    real = pilot_run.run_one
    monkeypatch.setattr(pilot_run, "run_one", lambda s, r, *a: fitted.append(r) or real(s, r, *a))
    assert main(_argv(pilot_dir.parent, out)) == 0
    assert sorted((r.model, r.seed) for r in fitted) == [("logistic_regression", s) for s in (0, 1)]
    assert len(pd.read_csv(out / "runs.csv")) == len(runs)
    capsys.readouterr()
    assert main(_argv(pilot_dir.parent, out, "--budget", "standard")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "other settings (budget was 'quick', now 'standard'; sweep was" in err


def test_an_interrupted_pilot_keeps_what_finished(tmp_path, monkeypatch, capsys):
    small_table().to_csv(tmp_path / "table.csv", index=False)
    real, calls = pilot_run.run_one, []

    def stop_after_two(split, run, *args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(run)
        return real(split, run, *args)

    monkeypatch.setattr(pilot_run, "run_one", stop_after_two)
    argv = ["pilot", str(tmp_path / "table.csv"), "--target", "label", "--split-by", "region",
            "--train", "north", "--drop", "day", "--seeds", "1", "--params", FAST, "--models",
            "attnmoe", "logistic_regression", "majority", "--out", str(tmp_path / "out"),
            "--quiet"]  # fmt: skip
    assert main(argv) == 130
    assert len(pd.read_csv(tmp_path / "out" / "runs.csv")) == 2
    assert not (tmp_path / "out" / "pilot.html").exists()
    monkeypatch.setattr(pilot_run, "run_one", real)
    assert main(argv) == 0
    assert len(pd.read_csv(tmp_path / "out" / "runs.csv")) == 3


def test_parquet_tables_and_a_new_file(tmp_path, capsys):
    table = small_table()
    table[:160].to_parquet(tmp_path / "old.parquet")
    table[160:].to_csv(tmp_path / "new.csv", index=False)
    argv = ["pilot", str(tmp_path / "old.parquet"), "--new", str(tmp_path / "new.csv"),
            "--target", "label", "--drop", "day", "--seeds", "1", "--params", FAST, "--models",
            "attnmoe", "logistic_regression", "--out", str(tmp_path / "out"),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    content = json.loads((tmp_path / "out" / "pilot.json").read_text())
    assert (content["n_train"], content["n_new"]) == (160, len(table) - 160)
    assert "page: " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split-by", "region", "--train", "north", "--time", "day", "--cutoff", "2021"],
         "give exactly one shift definition"),
        (["--split-by", "place", "--train", "north"], "DATA has no column 'place'"),
        (["--split-by", "region", "--train", "west"], "no row has 'region' among them"),
        (["--time", "day", "--cutoff", "2030-01-01"], "no usable new rows"),
        (["--new", "{root}/table.csv", "--models", "majority"], "a pilot weighs attnmoe"),
    ],
)  # fmt: skip
def test_one_line_errors_through_the_command(tmp_path, capsys, extra, message):
    small_table().to_csv(tmp_path / "table.csv", index=False)
    extra = [e.format(root=tmp_path) for e in extra]
    argv = ["pilot", str(tmp_path / "table.csv"), "--target", "label", *extra,
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert main(["pilot", str(tmp_path / "table.csv"), "--target", "class", "--new",
                 str(tmp_path / "table.csv"), "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "DATA has no column 'class'" in capsys.readouterr().err


def test_the_output_folder_may_not_hold_the_data(tmp_path, capsys):
    small_table().to_csv(tmp_path / "table.csv", index=False)
    argv = ["pilot", str(tmp_path / "table.csv"), "--target", "label", "--split-by", "region",
            "--train", "north", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "holds the input" in capsys.readouterr().err
