"""``attnmoe fit`` / ``predict`` / ``impute`` on CSV files."""

import json

import numpy as np
import pandas as pd
import pytest

from attnmoe.cli import main
from attnmoe.tabular import AttentionMoEClassifier

FAST = json.dumps({"epochs": 30, "batch_size": 256, "learning_rate": 1e-2})


@pytest.fixture()
def table(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.integers(0, 4, n)
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "colour": colour,
            "size": size,
            "weight": rng.normal(size=n),
            "label": np.where((colour == "red") | (size >= 3), "yes", "no"),
        }
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return frame, path


def test_fit_then_predict_matches_the_python_api(tmp_path, table, capsys):
    frame, path = table
    model, out = tmp_path / "model", tmp_path / "pred.csv"
    assert main(["fit", str(path), "--target", "label", "--drop", "id", "--out", str(model),
                 "--params", FAST]) == 0  # fmt: skip
    assert (
        "fitted on 300 rows, 3 columns (colour, size, weight), 2 classes" in capsys.readouterr().out
    )
    assert main(["predict", str(model), str(path), "--out", str(out), "--proba", "--explain"]) == 0
    pred = pd.read_csv(out)
    clf = AttentionMoEClassifier.from_pretrained(model)
    X = frame[["colour", "size", "weight"]]
    np.testing.assert_array_equal(pred["prediction"], clf.predict(X))
    np.testing.assert_allclose(pred[["p_no", "p_yes"]], clf.predict_proba(X), rtol=1e-6)
    assert list(pred.columns[:5]) == list(frame.columns)  # the input comes back unchanged
    assert (pred["prediction"] == frame["label"]).mean() > 0.9  # it learnt the rule
    assert set(pred["top_expert"]) <= {"colour", "size", "weight"}
    assert pred["top_expert"].notna().all()


def test_fit_leaves_unlabelled_rows_out_and_predict_keeps_true_labels(tmp_path, table, capsys):
    frame, _ = table
    gapped = frame.assign(label=frame["label"].where(frame.index >= 20))
    path = tmp_path / "gapped.csv"
    gapped.to_csv(path, index=False)
    model = tmp_path / "model"
    assert main(["fit", str(path), "--target", "label", "--drop", "id", "--out", str(model),
                 "--params", FAST]) == 0  # fmt: skip
    assert "20 rows without a 'label' label are left out" in capsys.readouterr().out
    # the prediction column may not overwrite a column of the data
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(path), "--out", str(out), "--column", "label"]) == 2
    assert "already has column(s) ['label']" in capsys.readouterr().err
    assert not out.exists()


def test_impute_fills_every_missing_cell(tmp_path, table, capsys):
    frame, _ = table
    holes = frame.copy()
    holes.loc[::10, "colour"] = np.nan
    holes.loc[5::10, "size"] = np.nan
    path, out = tmp_path / "holes.csv", tmp_path / "filled.csv"
    holes.to_csv(path, index=False)
    assert main(["impute", str(path), "--keep", "id", "--out", str(out), "--params", FAST]) == 0
    assert "filled 60 cells (colour: 30, size: 30)" in capsys.readouterr().out
    filled = pd.read_csv(out)
    assert filled.notna().all().all()
    kept = holes.notna()
    pd.testing.assert_frame_equal(filled[kept], holes[kept], check_dtype=False)


def test_command_errors(tmp_path, table, capsys):
    _, path = table
    model = tmp_path / "model"
    cases = [
        (["fit", str(path), "--target", "nope", "--out", str(model)], "no column(s) ['nope']"),
        (["fit", str(path), "--target", "label", "--out", str(model), "--params", '{"epoch": 3}'],
         "['epoch'] are not parameters of AttentionMoEClassifier"),
        (["fit", str(path), "--target", "label", "--out", str(model), "--params", "[1]"],
         "must be a JSON object"),
        (["predict", str(tmp_path / "none"), str(path), "--out", str(tmp_path / "p.csv")],
         "no classifier.json"),
        (["impute", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "f.csv")],
         "No such file"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err
    assert not model.exists()
