"""Damaged model folders through ``predict``, ``convert`` and ``from_pretrained``.

Loading either refuses the folder in one line or gives a model that predicts
exactly as the undamaged one did; ``main()`` never shows a traceback.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnmoe.model import load_model
from attnmoe.tabular import AttentionMoEClassifier

from . import checks
from .conftest import table
from .corruptions import corruptions, damaged_copy
from .harness import RECORDER, Outcome, check_and_record, fuzz_settings, run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _unverified(outcome: Outcome) -> bool:
    """Whether loading said it could not verify the folder (its manifest gone)."""
    return "manifest" in outcome.stderr and "warning:" in outcome.stderr


def _load(load, folder: Path):
    """``load(folder)``: the model, or the one-line message of a refusal."""
    try:
        return load(folder), None
    except (ValueError, OSError) as err:  # ModelFileError is a ValueError
        message = str(err)
        assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
        return None, message


def _record_load(suite: str, error: str | None) -> None:
    outcome = Outcome([], 0 if error is None else 2, "", f"error: {error}", False, None)
    RECORDER.add(suite, outcome, error is None)


@fuzz_settings(150)
@given(damage=corruptions, data=st.data(), proba=st.booleans())
def test_predict_with_a_damaged_classifier(classifier, other_classifier, damage, data, proba):
    clf, folder, csv = classifier
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        done = damaged_copy(folder, other_classifier, model, damage, data)
        out = Path(tmp) / "pred.csv"
        argv = ["predict", model, csv, "--out", out] + (["--proba"] if proba else [])
        outcome = run_cli(argv, [csv])

        def same_predictions():  # loaded in spite of the damage: it must be the same model
            if not _unverified(outcome):
                checks.check_predictions(out, csv, None, clf, "prediction", proba)

        ok = check_and_record("model folder: predict", outcome, same_predictions)
        loaded, error = _load(AttentionMoEClassifier.from_pretrained, model)
        _record_load("model folder: classifier from_pretrained", error)
        assert (loaded is None) == (not ok), f"predict and from_pretrained disagree: {done}"


def _same_model(a, b) -> bool:
    x = torch.randint(0, a.config.vocab_size, (4, a.config.max_len), generator=torch.Generator())
    with torch.no_grad():
        return bool(torch.allclose(a.masked_log_probs(x), b.masked_log_probs(x), atol=1e-5))


@fuzz_settings(150)
@given(damage=corruptions, data=st.data())
def test_convert_a_damaged_attention_model(attention, other_attention, damage, data):
    original, folder = attention
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        done = damaged_copy(folder, other_attention, model, damage, data)
        out = Path(tmp) / "experts"
        outcome = run_cli(["convert", model, out, "--check"], [model])

        def same_model():
            if not _unverified(outcome):
                assert _same_model(original, load_model(model)), f"loaded another model: {done}"
                assert _same_model(original, load_model(out)), f"converted another one: {done}"

        ok = check_and_record("model folder: convert", outcome, same_model)
        loaded, error = _load(load_model, model)
        _record_load("model folder: load_model", error)
        assert (loaded is None) == (not ok), f"convert and load_model disagree: {done}"


def test_the_originals_load_as_saved(classifier, attention):
    """The fuzz tests' baseline: the undamaged folders give the saved models back."""
    clf, folder, _ = classifier
    X = table(0).drop(columns="label")
    loaded = AttentionMoEClassifier.from_pretrained(folder)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    model, attention_folder = attention
    assert _same_model(model, load_model(attention_folder))
