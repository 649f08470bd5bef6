"""AttentionMoEClassifier.save_pretrained / from_pretrained: JSON + safetensors, atomic."""

import json

import numpy as np
import pandas as pd
import pytest

from attnmoe.model.io import ModelFileError
from attnmoe.tabular import AttentionMoEClassifier

from .conftest import FAST

# the table's planted NaN is masked with a warning, as documented
pytestmark = pytest.mark.filterwarnings("ignore:1 missing")


def _table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "colour": pd.Categorical(rng.choice(["red", "green"], n)),
            "size": rng.integers(0, 4, n),
            "noise": rng.normal(size=n),
            "flag": rng.random(n) < 0.5,
        }
    )
    frame.loc[3, "noise"] = np.nan
    return frame


@pytest.mark.parametrize(
    "labels",
    [np.array(["no", "yes"]), np.array([3, 7]), np.array([1.0, 2.0]), np.array([True, False])],
)
def test_round_trip_predicts_the_same(tmp_path, labels):
    X = _table()
    y = np.resize(labels, len(X))
    clf = AttentionMoEClassifier(**{**FAST, "n_ensembles": 2}).fit(X, y)
    clf.save_pretrained(tmp_path / "model")
    back = AttentionMoEClassifier.from_pretrained(tmp_path / "model")
    assert back.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    assert list(back.feature_names_in_) == list(X.columns)
    assert back.mask_id_ == clf.mask_id_ and back.n_features_in_ == 4
    assert back.get_params() == clf.get_params()
    X_new = _table(seed=1)
    np.testing.assert_array_equal(back.predict_proba(X_new), clf.predict_proba(X_new))
    np.testing.assert_array_equal(back.predict(X_new), clf.predict(X_new))
    files = sorted(
        p.relative_to(tmp_path / "model").as_posix()
        for p in (tmp_path / "model").rglob("*")
        if p.is_file()
    )
    assert files == [
        "classifier.json",
        "manifest.json",
        "member_0/config.json",
        "member_0/manifest.json",
        "member_0/model.safetensors",
        "member_1/config.json",
        "member_1/manifest.json",
        "member_1/model.safetensors",
    ]  # no pickle anywhere
    meta = json.loads((tmp_path / "model" / "classifier.json").read_text())
    assert meta["classes"] == [str(c) for c in clf.classes_]


def test_save_is_atomic(tmp_path, monkeypatch):
    X = _table()
    y = np.resize(["a", "b"], len(X))
    first = AttentionMoEClassifier(**FAST).fit(X, y)
    first.save_pretrained(tmp_path / "model")
    before = (tmp_path / "model" / "classifier.json").read_text()
    second = AttentionMoEClassifier(**{**FAST, "random_state": 1}).fit(X, y)

    def crash(directory):
        raise OSError("disk full")

    monkeypatch.setattr(second.models_[0], "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        second.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "classifier.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging left behind
    monkeypatch.undo()
    second.save_pretrained(tmp_path / "model")  # replaces the old one
    back = AttentionMoEClassifier.from_pretrained(tmp_path / "model")
    np.testing.assert_array_equal(back.predict_proba(X), second.predict_proba(X))


def test_bad_directories(tmp_path):
    with pytest.raises(ModelFileError, match=r"classifier\.json"):
        AttentionMoEClassifier.from_pretrained(tmp_path)
    (tmp_path / "classifier.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        AttentionMoEClassifier.from_pretrained(tmp_path)
