"""predict_proba from experts-form tables equals the torch forward pass it replaced."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe import BidirectionalAttention
from attnmoe.tabular import AttentionMoEClassifier

# the rows to predict hold masked and clipped cells on purpose
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(replaced by the mask token|clipped to its nearest edge):UserWarning"
)


def _table(seed: int, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Text, whole-number, float (fractional codes) and many-valued integer columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "colour": rng.choice(["red", "green", "blue"], n),
            "size": rng.integers(0, 4, n),
            "weight": rng.normal(size=n),
            "count": rng.integers(0, 500, n),
        }
    )
    label = np.where((frame["colour"] == "red") | (frame["size"] >= 2), "yes", "no")
    label[frame["weight"] > 1.2] = "maybe"
    return frame, label


def _new_rows() -> pd.DataFrame:
    """Rows to predict: seen values, unseen categories, gaps, out-of-range numbers."""
    frame, _ = _table(1, 40)
    frame = frame.astype({"size": float, "count": float})
    frame.loc[0, "colour"] = "purple"  # unseen: the mask token
    frame.loc[1, "size"] = np.nan
    frame.loc[2, "weight"] = np.nan
    frame.loc[3, ["colour", "size", "weight", "count"]] = [None, np.nan, np.nan, np.nan]
    frame.loc[4, "weight"] = 1e6  # clipped to the last knot
    frame.loc[5, "count"] = -1e6  # clipped to the first
    frame.loc[6, "size"] = 2.5  # between two knots
    frame.loc[7, "size"] = 99  # clipped
    return frame


def _randomised(clf: AttentionMoEClassifier, seed: int) -> AttentionMoEClassifier:
    """``clf`` with every weight of every member redrawn: gates far from uniform."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in clf.models_:
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.7)
    return clf


@torch.no_grad()
def _torch_path(clf: AttentionMoEClassifier, X) -> np.ndarray:
    """predict_proba as the members' torch forward pass gives it (the path before tables)."""
    tokens = clf.tokens(X)
    n_classes = len(clf.classes_)
    proba = np.zeros((len(tokens), n_classes))
    for model in clf.models_:
        logits = model.masked_logits(tokens, positions=tokens.shape[1] - 1)[:, 0, :n_classes]
        proba += torch.softmax(logits, -1).numpy()
    return proba / len(clf.models_)


def _fitted(**params) -> AttentionMoEClassifier:
    frame, label = _table(0, 150)
    params = {"epochs": 1, "n_heads": 3, "random_state": 0, **params}
    clf = AttentionMoEClassifier(**params)
    return clf.fit(frame, label)


@pytest.fixture
def no_torch_forward(monkeypatch):
    """Fail any masked_logits call: the tables must answer alone."""

    def refuse(*args, **kwargs):
        raise AssertionError("the torch forward pass ran")

    monkeypatch.setattr(BidirectionalAttention, "masked_logits", refuse)


@pytest.mark.parametrize("block", ["bert", "pure"])
@pytest.mark.parametrize("n_ensembles", [1, 3])
def test_predict_proba_equals_the_torch_path(block, n_ensembles, monkeypatch):
    clf = _randomised(_fitted(block=block, n_ensembles=n_ensembles), seed=n_ensembles)
    X = _new_rows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # masked and clipped cells, said
        tokens = clf.tokens(X).numpy()
        assert tokens.dtype == np.float64 and (tokens != np.floor(tokens)).any()
        expected = _torch_path(clf, X)
        with monkeypatch.context() as patch:
            patch.setattr(BidirectionalAttention, "masked_logits", None)  # tables alone
            proba = clf.predict_proba(X)
            labels = clf.predict(X)
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-10)
    assert list(labels) == list(clf.classes_[expected.argmax(1)])
    # integer codes only
    whole = _table(2, 30)[0]
    for j in (2, 3):  # the float and many-valued columns at their knots: whole codes
        knots = clf.encoder_.columns_[j].knots
        whole.iloc[:, j] = knots[np.arange(len(whole)) % len(knots)]
    assert clf.tokens(whole).dtype == torch.int64
    np.testing.assert_allclose(clf.predict_proba(whole), _torch_path(clf, whole), atol=1e-10)


def test_the_tables_follow_the_members_weights():
    clf = _fitted()
    X = _new_rows().iloc[8:]  # seen values only
    before = clf.predict_proba(X)
    _randomised(clf, seed=7)  # written in place: the cached tables are stale
    after = clf.predict_proba(X)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _torch_path(clf, X), rtol=0, atol=1e-10)
    clf.models_ = [clf.models_[0], _randomised(_fitted(random_state=1), 3).models_[0]]
    np.testing.assert_allclose(clf.predict_proba(X), _torch_path(clf, X), rtol=0, atol=1e-10)
    # the unpickled classifier predicts the same
    assert np.array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), clf.predict_proba(X))


def test_the_tables_answer_without_the_torch_forward_pass(no_torch_forward):
    clf = _fitted()
    assert clf.predict_proba(_new_rows().iloc[8:]).shape[1] == 3


@pytest.mark.parametrize("params", [{"n_layers": 2}, {"top_k": 2}], ids=["two layers", "top_k"])
def test_deeper_or_sparse_models_keep_the_torch_path(params, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the slow-engine warning of top_k
        clf = _fitted(**params)
    X = _new_rows().iloc[8:]
    assert clf._prediction_tables() is None
    np.testing.assert_array_equal(clf.predict_proba(X), _torch_path(clf, X))
