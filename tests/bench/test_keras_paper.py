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


def test_position_embeddings_start_glorot_uniform_like_keras_nlp():
    X, y = _table(50)
    keras_model = KerasPaperClassifier(epochs=0, random_state=0).fit(X, y).model_
    (table,) = [w for w in keras_model.weights if tuple(w.shape) == (4, 20)]
    limit = np.sqrt(6 / (4 + 20))  # Glorot: L = 4 locations, d = 20
    values = np.asarray(table)
    assert np.abs(values).max() <= limit and np.abs(values).max() > 0.8 * limit


def test_loss_counts_the_masked_location_averaged_over_all():
    X, y = _table(64)
    clf = KerasPaperClassifier(epochs=0, random_state=0).fit(X, y)
    rows = np.column_stack([X.to_numpy(), y])
    copies = np.repeat(rows, 4, axis=0)
    weights = np.tile(np.eye(4, dtype=np.float32), (64, 1))
    targets = copies.copy()
    copies[weights > 0] = clf.n_cat_
    proba = clf.model_.predict(copies, verbose=0)  # (N L, L, n_cat)
    masked = np.take_along_axis(proba, targets[..., None], axis=2)[..., 0][weights > 0]
    expected = -np.log(masked).sum() / copies.size  # mean over every location
    loss = clf.model_.evaluate(copies, targets, sample_weight=weights, verbose=0)
    assert loss == pytest.approx(expected, rel=1e-4)


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
