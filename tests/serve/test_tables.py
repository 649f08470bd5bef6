"""The served answers from experts-form tables equal the ``explain`` path's."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.serve import Predictor
from attnmoe.serve.predictor import RowError, _column_texts
from attnmoe.serve.tables import ExpertTables
from attnmoe.tabular import AttentionMoEClassifier


def _three_classes(table):
    frame, label = table
    return frame, np.where(frame["size"] == 1, "maybe", label)


def _fitted(table, tmp_path, gelu: bool = False, **params) -> Predictor:
    torch.set_num_threads(1)
    frame, label = _three_classes(table)
    clf = AttentionMoEClassifier(epochs=3, n_heads=2, random_state=0, **params).fit(frame, label)
    clf.save_pretrained(tmp_path / "m")
    if gelu:  # the estimator has no activation knob; a model's config has
        for model in clf.models_:
            model.config.activation = "gelu"
            model.layers[0].output.link.feed_forward[1] = torch.nn.GELU()
        return Predictor(tmp_path / "m", clf)
    return Predictor(tmp_path / "m")


def _slow(predictor: Predictor) -> Predictor:
    """The same model on the ``explain`` path."""
    slow = Predictor(predictor.directory, predictor.clf)
    slow.tables = None
    return slow


def _client_rows(frame: pd.DataFrame) -> list[dict]:
    return [
        {"colour": str(r.colour), "size": int(r.size), "noise": float(r.noise)}
        for r in frame.itertuples()
    ]


def _assert_same(fast: list[dict], slow: list[dict]) -> None:
    assert len(fast) == len(slow)
    for got, want in zip(fast, slow, strict=True):
        assert got["class"] == want["class"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-9, rel=0)
        assert list(got["experts"]) == list(want["experts"])  # the same heads, in order
        for head, experts in want["experts"].items():
            mine = got["experts"][head]
            assert [(e["feature"], e["value"]) for e in mine] == [
                (e["feature"], e["value"]) for e in experts
            ]
            assert [e["share"] for e in mine] == pytest.approx([e["share"] for e in experts])
            assert [e["gate"] for e in mine] == pytest.approx([e["gate"] for e in experts])


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"block": "pure"},
        {"gelu": True},
        {"n_ensembles": 2},
        {"block": "pure", "n_ensembles": 3},
    ],
    ids=["bert", "pure", "gelu", "two members", "pure three members"],
)
def test_tables_answer_as_the_explain_path(table, tmp_path, params):
    fast = _fitted(table, tmp_path, **params)
    assert fast.tables is not None
    frame, _ = table
    rows = _client_rows(frame.head(12))
    rows[3]["noise"], rows[4]["colour"], rows[5]["size"] = None, "purple", 99  # masked cells
    slow = _slow(fast)
    # one request at a time, and several requests predicted together
    prepared = [fast.prepare(rows[:5]), fast.prepare(rows[5:6]), fast.prepare(rows[6:])]
    together = [a for answers in fast.predict_many(prepared) for a in answers]
    expected = [a for part in (rows[:5], rows[5:6], rows[6:]) for a in slow.predict(
        slow.frame(part))]  # fmt: skip
    _assert_same(together, expected)
    # the probabilities are predict_proba's
    proba = fast.clf.predict_proba(pd.DataFrame.from_records(rows))
    got = np.array([[a["probabilities"][str(c)] for c in fast.clf.classes_] for a in together])
    assert np.abs(got - proba).max() < 1e-6
    # attnmoe predict --log: a CSV's table, with predict_proba's probabilities kept
    X = frame.head(6)
    _assert_same(fast.predict(X, fast.clf.predict_proba(X)), slow.predict(X))


def test_the_cells_are_encoded_as_the_estimator_encodes_them(table, tmp_path):
    predictor = _fitted(table, tmp_path)
    rows = [
        {"colour": "red", "size": 2, "noise": 0.3},
        {"colour": None, "size": 2.0, "noise": None},  # 2.0 is knot 2
        {"colour": "unseen", "size": 7, "noise": -50.0},
        {"colour": 3, "size": 2.5, "noise": 1e9},  # between two knots; clipped
        {"colour": "blue", "size": 1, "noise": 0},
    ]
    for k in range(len(rows)):  # each row alone, and all together
        for part in (rows[k : k + 1], rows):
            with warnings.catch_warnings():  # missing and unseen cells, said
                warnings.simplefilter("ignore", UserWarning)
                expected = predictor.clf.tokens(pd.DataFrame.from_records(part)).numpy()
            assert (predictor.prepare(part).tokens == expected).all()
    for cell in ("2", True):  # a numeric column (size: whole numbers) takes numbers only
        with pytest.raises(RowError, match=r"rows\[0\]\.size: expected a number"):
            predictor.prepare([{"colour": "red", "size": cell, "noise": 0.0}])


CELLS = [None, True, False, 3, -2, 2.5, 1e16, 0.1, "a", "3", 10**20, 2**63 - 1]


def test_cell_texts_are_spelt_as_pandas_spells_the_requests_table():
    for combo in itertools.chain(
        itertools.product(CELLS, repeat=2), itertools.product(CELLS[:6], repeat=3)
    ):
        frame = pd.DataFrame.from_records([{"c": v} for v in combo], columns=["c"])
        expected = list(frame.astype(object).to_numpy().astype(str)[:, 0])
        assert _column_texts(list(combo)) == expected, combo


def test_deeper_or_sparse_models_keep_the_explain_path(table):
    frame, label = table
    for params in ({"n_layers": 2}, {"top_k": 2}):
        clf = AttentionMoEClassifier(epochs=1, random_state=0, **params).fit(frame, label)
        assert ExpertTables.for_classifier(clf) is None
