"""The paper's model in Keras (a timing reference): the same model as attnmoe's."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorflow")  # the optional attnmoe[keras] extra

from attnmoe.bench.keras_paper import KerasPaperClassifier
from attnmoe.tabular import AttentionMoEClassifier


def _table(n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.integers(0, 4, size=(n, 3)), columns=["a", "b", "c"])
    return X, X["a"].to_numpy().copy()  # the target copies column a


def test_as_many_weights_as_attnmoe_model():
    X, y = _table(50)
    keras_model = KerasPaperClassifier(epochs=1, random_state=0).fit(X, y).model_
    ours = AttentionMoEClassifier(epochs=1, random_state=0).fit(X, y).models_[0]
    assert keras_model.count_params() == sum(p.numel() for p in ours.parameters())


def test_learns_a_copied_column_and_refuses_bad_codes():
    X, y = _table()
    clf = KerasPaperClassifier(epochs=40, random_state=0).fit(X, y)
    assert clf.n_cat_ == 4
    assert clf.predict_proba(X).shape == (len(X), 4)
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="integer codes"):
        clf.predict(X.assign(a=7))
    with pytest.raises(ValueError, match="integer codes"):
        clf.predict(X.assign(a=0.5))
    with pytest.raises(ValueError, match="integer code"):
        KerasPaperClassifier(epochs=1).fit(X, y - 1)


def test_docstring_example_runs():
    import doctest

    from attnmoe.bench import keras_paper

    assert doctest.testmod(keras_paper).failed == 0
