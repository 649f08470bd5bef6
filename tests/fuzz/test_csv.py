"""Random CSV files through ``attnmoe fit``, ``predict``, ``impute`` and ``report``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnmoe.tabular import AttentionMoEClassifier

from . import checks
from .conftest import TINY
from .harness import check_and_record, fuzz_settings, run_cli
from .strategies import csv_files

#: the session classifier's columns (conftest.table) and their kinds
MODEL_COLUMNS = {"colour": "text", "size": "int", "weight": "float", "flag": "bool"}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
seps = st.sampled_from([None, None, None, ",", ";", "\t", "|"])


def _run(suite: str, argv: list, inputs: list, verify) -> bool:
    """Run ``argv``; on success, ``verify()`` checks what it wrote."""
    return check_and_record(suite, run_cli(argv, inputs), verify)


@fuzz_settings(60)
@given(data=csv_files(), sep=seps, target=st.integers(0, 5), unlabeled=st.booleans())
def test_fit_on_random_csv(data, sep, target, unlabeled):
    with tempfile.TemporaryDirectory() as tmp:
        path = data.write(Path(tmp) / "data.csv")
        name = data.header[target % len(data.header)]
        argv = ["fit", path, "--target", name, "--out", Path(tmp) / "model"]
        argv += ["--params", json.dumps(TINY)] + (["--sep", sep] if sep else [])
        argv += ["--use-unlabeled"] if unlabeled else []
        _run("csv: fit", argv, [path], lambda: _check_fitted(Path(tmp) / "model", path, sep))


def _check_fitted(model: Path, data: Path, sep: str | None) -> None:
    """The saved model loads and gives each row of DATA probabilities over two classes or more."""
    clf = AttentionMoEClassifier.from_pretrained(model)
    assert len(clf.classes_) >= 2
    typed, _ = checks.read_input(data, sep)
    proba = clf.predict_proba(typed[[str(c) for c in clf.feature_names_in_]])
    assert np.isfinite(proba).all() and (abs(proba.sum(1) - 1) < 1e-5).all()


@fuzz_settings(200)
@given(
    data=csv_files(required=MODEL_COLUMNS),
    sep=seps,
    column=st.sampled_from(["prediction", "prediction", "p", "", "colour", "名"]),
    proba=st.booleans(),
)
def test_predict_on_random_csv(classifier, data, sep, column, proba):
    clf, model, _ = classifier
    with tempfile.TemporaryDirectory() as tmp:
        path = data.write(Path(tmp) / "data.csv")
        out = Path(tmp) / "pred.csv"
        argv = ["predict", model, path, "--out", out, "--column", column]
        argv += (["--sep", sep] if sep else []) + (["--proba"] if proba else [])
        verify = lambda: checks.check_predictions(out, path, sep, clf, column, proba)  # noqa: E731
        _run("csv: predict", argv, [path, model], verify)


@fuzz_settings(80)
@given(data=csv_files(), sep=seps, keep=st.integers(-1, 3))
def test_impute_on_random_csv(data, sep, keep):
    with tempfile.TemporaryDirectory() as tmp:
        path = data.write(Path(tmp) / "data.csv")
        out = Path(tmp) / "filled.csv"
        kept = [data.header[keep]] if 0 <= keep < len(data.header) else []
        argv = ["impute", path, "--out", out, "--params", json.dumps(TINY)]
        argv += (["--sep", sep] if sep else []) + (["--keep", *kept] if kept else [])
        _run("csv: impute", argv, [path], lambda: checks.check_imputed(out, path, sep, kept))


@fuzz_settings(40)
@given(
    data=csv_files(required={**MODEL_COLUMNS, "label": "text"}),
    sep=seps,
    target=st.sampled_from([None, "label", "colour", "nope"]),
    group=st.sampled_from([None, "colour", "flag", "label", "nope"]),
)
def test_report_on_random_csv(classifier, data, sep, target, group):
    _, model, _ = classifier
    with tempfile.TemporaryDirectory() as tmp:
        path = data.write(Path(tmp) / "data.csv")
        out = Path(tmp) / "report.html"
        argv = ["report", model, path, "--out", out, "--bootstrap", "5", "--rows", "2"]
        argv += ["--sep", sep] if sep else []
        argv += ["--target", target] if target else []
        argv += ["--group", group] if group else []
        _run("csv: report", argv, [path, model], lambda: checks.check_report(out))
