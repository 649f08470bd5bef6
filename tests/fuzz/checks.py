"""What a successful run must have written: checked against the input, not trusted."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from attnmoe.cli.csv_files import read_table


def read_input(path: Path, sep: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DATA as the commands read it (typed, and as written), their messages swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return read_table(str(path), sep)


def read_output(path: Path) -> pd.DataFrame:
    assert path.is_file(), f"exit 0 but no output {path}"
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def check_predictions(out: Path, data: Path, sep: str | None, clf, column: str, proba: bool):
    """One well-formed prediction per input row, equal to the model's own, DATA unchanged."""
    typed, text = read_input(data, sep)
    pred = read_output(out)
    assert len(pred) == len(typed), "not one prediction per input row"
    assert list(pred.columns[: text.shape[1]]) == list(text.columns)
    assert (pred.iloc[:, : text.shape[1]].to_numpy() == text.to_numpy()).all(), "DATA changed"
    labels = pred[column]
    assert (labels.str.strip() != "").all(), "a blank prediction"
    classes = [str(c) for c in clf.classes_]
    assert labels.isin(classes).all(), f"a prediction outside the classes {classes}"
    features = [str(c) for c in clf.feature_names_in_]
    expected = clf.predict_proba(typed[features])
    assert np.array_equal(labels.to_numpy(), np.array(classes)[expected.argmax(1)])
    p = pred[f"{column}_probability"].astype(float).to_numpy()
    assert np.isfinite(p).all() and ((p > 0) & (p <= 1)).all(), "a bad probability"
    if proba:
        table = pred[[f"p_{c}" for c in classes]].astype(float).to_numpy()
        assert np.isfinite(table).all()
        np.testing.assert_allclose(table.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(table, expected, rtol=1e-5, atol=1e-7)


def check_imputed(out: Path, data: Path, sep: str | None, keep: list[str]):
    """Every cell as written but the missing ones, and those filled (outside --keep)."""
    typed, text = read_input(data, sep)
    filled = read_output(out)
    assert filled.shape == text.shape and list(filled.columns) == list(text.columns)
    holes = typed.isna().to_numpy()
    same = filled.to_numpy() == text.to_numpy()
    assert same[~holes].all(), "a present cell changed"
    for j, name in enumerate(text.columns):
        if name not in keep:
            assert (filled.iloc[holes[:, j], j].str.strip() != "").all(), f"{name!r} not filled"


def check_report(out: Path):
    assert out.is_file(), f"exit 0 but no report {out}"
    html = out.read_text(encoding="utf-8")
    assert "</html>" in html, "a cut report"
    assert "<script>alert(1)" not in html, "a column name written as markup"
