"""The paper's tabular model in Keras, the framework of the paper's own code.

A reference for issue 3's speed target (a fit at least 20x faster than the
paper's Keras implementation), timed side by side with attnmoe in one run so
that the ratio, not a wall time on a shared machine, is what is compared. It
is written from the model's specification (``paper.md`` §3), not from the
authors' code: shared category codes ``0..n_cat-1`` for every column and the
mask code ``n_cat``; embeddings of size 20 plus learned position embeddings;
one BERT block (5 heads of key size 4, dropout 0.1, residual + LayerNorm with
eps 1e-6, feed-forward 20 -> 5 (ReLU) -> 20, residual + LayerNorm); a dense
softmax over ``n_cat``; Adam (lr 1e-3, Keras's epsilon), batches of 128 masked
copies (every location of every row masked once per epoch, shuffled); Keras's
default initialisers, and keras_nlp's Glorot-uniform one for the position
embeddings. As the paper's code does, the softmax runs at every location and
the loss counts the masked one only, averaged over all ``L`` locations of a copy.
It has exactly as many weights as
:class:`attnmoe.tabular.AttentionMoEClassifier`'s model of the same sizes
(tested). Differences from ``AttentionMoEClassifier``, all immaterial on the
paper's tables (integer bins ``0..n_cat-1`` in every column): inputs must be
such codes (no encoding of other values, no mask token for unseen ones), and
``classes_`` are all ``n_cat`` codes.

Needs TensorFlow (``pip install "attnmoe[keras]"``), which the library itself
never imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

if TYPE_CHECKING:  # imported when used: TensorFlow is an optional extra
    import keras


def _keras():
    try:
        import keras
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            'the Keras reference needs TensorFlow: pip install "attnmoe[keras]"'
        ) from error
    return keras


class KerasPaperClassifier(ClassifierMixin, BaseEstimator):
    """The paper's attention model for integer-coded tables, trained in Keras.

    Parameters
    ----------
    epochs : int, default=200
        Passes over every masked copy of the training rows.
    batch_size : int, default=128
        Masked copies per Adam step.
    d_model : int, default=20
        Embedding size.
    n_heads : int, default=5
        Attention heads.
    d_head : int, default=4
        Key (and value) size per head.
    d_ff : int, default=5
        Hidden units of the feed-forward layer.
    dropout : float, default=0.1
        Dropout of the attention output and of the feed-forward output.
    learning_rate : float, default=1e-3
        Adam's learning rate (Keras's Adam otherwise).
    steps_per_execution : int, default=1
        Adam steps per call into the backend (``keras.Model.compile``); more
        cuts Python's share of a step, with the same updates.
    random_state : int or None, default=None
        Seeds Python's, NumPy's global and TensorFlow's generators
        (``keras.utils.set_random_seed``: a side effect on the process).
    verbose : int, default=0
        Passed to ``keras.Model.fit``.

    Attributes
    ----------
    n_cat_ : int
        Number of category codes (the largest code in X or y, plus one).
    model_ : keras.Model
        Tokens ``(B, L)`` to the softmax over ``n_cat_`` codes at every location.
    classes_ : ndarray
        ``0..n_cat_-1``: the target's codes.

    Examples
    --------
    >>> from attnmoe.bench.datasets import make_simulation
    >>> data = make_simulation(4951, k=5, corr=0.9, x_noise=0.0)
    >>> clf = KerasPaperClassifier(epochs=1, random_state=0)
    >>> clf.fit(data.X_train, data.y_train).predict(data.X_test).shape
    (2000,)
    """

    def __init__(
        self,
        epochs: int = 200,
        batch_size: int = 128,
        d_model: int = 20,
        n_heads: int = 5,
        d_head: int = 4,
        d_ff: int = 5,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        steps_per_execution: int = 1,
        random_state: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_head
        self.d_ff = d_ff
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.steps_per_execution = steps_per_execution
        self.random_state = random_state
        self.verbose = verbose

    def _build(self, length: int) -> keras.Model:
        keras = _keras()
        from keras import layers

        class PositionEmbedding(layers.Layer):
            # adds a learned vector per location, initialised Glorot-uniform like
            # keras_nlp's PositionEmbedding, which the paper's code uses
            def build(self, input_shape):
                self.table = self.add_weight(
                    shape=(input_shape[1], input_shape[2]), initializer="glorot_uniform"
                )

            def call(self, x):
                return x + self.table

        tokens = keras.Input((length,), dtype="int32")
        x = layers.Embedding(self.n_cat_ + 1, self.d_model)(tokens)  # (B, L, d)
        x = PositionEmbedding()(x)
        att = layers.MultiHeadAttention(self.n_heads, self.d_head)(x, x)  # (B, L, d)
        h1 = layers.LayerNormalization(epsilon=1e-6)(x + layers.Dropout(self.dropout)(att))
        ff = layers.Dense(self.d_ff, activation="relu")(h1)  # (B, L, d_ff)
        ff = layers.Dropout(self.dropout)(layers.Dense(self.d_model)(ff))
        h2 = layers.LayerNormalization(epsilon=1e-6)(h1 + ff)
        out = layers.Dense(self.n_cat_, activation="softmax")(h2)  # (B, L, n_cat)
        model = keras.Model(tokens, out)
        model.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss="sparse_categorical_crossentropy",
            steps_per_execution=self.steps_per_execution,
        )
        return model

    def _codes(self, X, reset: bool) -> np.ndarray:
        values = validate_data(self, X, reset=reset, dtype=None)
        message = "X must hold integer codes in [0, n_cat) (e.g. the paper's bins)"
        if values.dtype.kind not in "iuf":
            raise ValueError(message)
        if values.dtype.kind == "f" and not (np.isfinite(values) & (values % 1 == 0)).all():
            raise ValueError(message)
        codes = values.astype(np.int64)
        if codes.min() < 0 or (not reset and codes.max() >= self.n_cat_):
            raise ValueError(message)
        return codes

    def fit(self, X, y) -> KerasPaperClassifier:
        """Train by masked-copy MLM over every column of X and the target y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Integer category codes (shared across columns).
        y : array-like of shape (n_samples,)
            Integer codes of the target.

        Returns
        -------
        KerasPaperClassifier
            The fitted estimator.
        """
        codes = self._codes(X, reset=True)
        y = np.asarray(y)
        check_classification_targets(y)
        if y.shape != (len(codes),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise ValueError("y must hold one non-negative integer code per row")
        self.n_cat_ = int(max(codes.max(), y.max())) + 1
        self.classes_ = np.arange(self.n_cat_)
        rows = np.column_stack([codes, y])  # (N, L), the target last
        n, length = rows.shape
        # every (row, location) copy with that location masked; the loss counts that
        # location only (weight 1) and is averaged over all L locations of a copy
        copies = np.repeat(rows, length, axis=0)  # (N * L, L)
        targets = copies.copy()
        weights = np.tile(np.eye(length, dtype=np.float32), (n, 1))  # (N * L, L)
        copies[weights > 0] = self.n_cat_
        keras = _keras()
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"the Keras reference runs on TensorFlow, not {keras.backend.backend()!r} "
                "(unset KERAS_BACKEND)"
            )
        if self.random_state is not None:  # seeds Python's, NumPy's and TF's generators
            keras.utils.set_random_seed(int(self.random_state))
        self.model_ = self._build(length)
        self.model_.fit(
            copies.astype(np.int32),
            targets.astype(np.int32),
            sample_weight=weights,
            batch_size=self.batch_size,
            epochs=self.epochs,
            shuffle=True,
            verbose=self.verbose,
        )
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of the target's codes, the target masked.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Integer codes below ``n_cat_``.

        Returns
        -------
        ndarray of shape (n_samples, n_cat_)
        """
        check_is_fitted(self)
        codes = self._codes(X, reset=False)
        tokens = np.column_stack([codes, np.full(len(codes), self.n_cat_)]).astype(np.int32)
        proba = self.model_.predict(tokens, batch_size=1024, verbose=0)  # (n, L, n_cat)
        return np.asarray(proba[:, -1])

    def predict(self, X) -> np.ndarray:
        """The most probable code of the target.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Integer codes below ``n_cat_``.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.predict_proba(X).argmax(axis=1)
