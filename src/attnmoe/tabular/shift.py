"""A validation split that leans toward covariate shift, built from training rows only.

Held-out training rows drawn at random come from the training distribution, so
choosing by them favours what works in distribution. When the deployment data
may pair feature values differently (the paper's simulation: features strongly
correlated in training, weakly at test), the training rows that already pair
their values unusually are the closest thing to shifted data one has. This
module scores each row by how typical its pairs of values are (pointwise mutual
information of every pair of columns, estimated on the table itself) and holds
out the least typical rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator

from .encoding import TableEncoder


def pair_typicality(X, n_bins: int = 10, smoothing: float = 1.0) -> np.ndarray:
    """Mean pointwise mutual information of each row's pairs of column values.

    For every pair of columns ``(a, b)`` and row ``r``, ``log p(x_a, x_b) -
    log p(x_a) - log p(x_b)`` with the probabilities counted on ``X`` itself: the
    joint over the ``V_a x V_b`` value pairs of the two columns (``V`` the number
    of distinct values a column holds) with ``smoothing`` added to every cell, and
    the marginals summed from that joint. A row's score is the mean over pairs.
    High: the row pairs its values as most rows do; low (negative): it pairs
    values that rarely occur together. Columns independent of each other score
    about 0 when their pairs' tables are well filled (many rows per pair of
    values); sparse ones (many values, few rows) score above 0 on average, since
    a pair seen once in a few rows counts as more typical than chance.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_samples, n_features)
        Encoded as the estimators encode it: numeric columns are cut into
        ``n_bins`` quantile bins, except whole-number columns with at most 50
        distinct values, which stay categories (object arrays are first given
        their columns' inferred types). Missing values count as one more value
        of their column.
    n_bins : int, default=10
        Quantile bins per numeric column.
    smoothing : float, default=1.0
        Pseudo-count added to every cell of each pair's contingency table.

    Returns
    -------
    ndarray of shape (n_samples,)
        Zeros when ``X`` has fewer than two columns (no pairs to judge).
    """
    if isinstance(X, pd.DataFrame):
        if X.columns.has_duplicates:
            duplicated = sorted({str(c) for c in X.columns[X.columns.duplicated()]})
            raise ValueError(f"X has duplicated column names: {duplicated}")
        frame = X.reset_index(drop=True)
    else:  # an object array (e.g. a mixed frame's .to_numpy()): numbers back to numbers
        frame = pd.DataFrame(np.asarray(X)).infer_objects()
    if frame.shape[0] == 0:
        raise ValueError("X has no rows")
    if smoothing <= 0:
        raise ValueError(f"smoothing must be positive, got {smoothing}")
    # counts of values: whole codes (bins), not positions between knots
    encoder = TableEncoder(n_bins=n_bins, numeric="bins").fit(frame)
    codes = encoder.encode(frame, encoder.n_codes, warn=False)  # missing: one more code
    n, n_columns = codes.shape
    scores = np.zeros(n)
    pairs = list(combinations(range(n_columns), 2))
    if not pairs:
        return scores
    # per column: each row's value as 0..V-1 over the values present, and their counts
    values, counts, sizes = [], [], []
    for j in range(n_columns):
        _, inverse, count = np.unique(codes[:, j], return_inverse=True, return_counts=True)
        values.append(inverse)
        counts.append(count)
        sizes.append(len(count))
    for a, b in pairs:
        # only the pairs that occur are counted; the others hold `smoothing` each
        cells = values[a].astype(np.int64) * sizes[b] + values[b]
        _, inverse, joint = np.unique(cells, return_inverse=True, return_counts=True)
        total = n + smoothing * sizes[a] * sizes[b]
        log_joint = np.log((joint[inverse] + smoothing) / total)
        log_a = np.log((counts[a][values[a]] + smoothing * sizes[b]) / total)
        log_b = np.log((counts[b][values[b]] + smoothing * sizes[a]) / total)
        scores += log_joint - log_a - log_b
    return scores / len(pairs)


class AtypicalHoldout(BaseCrossValidator):
    """One train/validation split whose validation rows are the least typical ones.

    The ``test_size`` share of rows with the lowest :func:`pair_typicality` (ties
    broken by row order) is the validation set; the rest train. Use it as ``cv``
    of scikit-learn's ``GridSearchCV`` to choose settings on training rows that
    pair their feature values unusually, a stand-in for covariate shift that never
    looks at test data. The target is not used: pass features only.

    Parameters
    ----------
    test_size : float, default=0.25
        Share of rows held out, in (0, 1).
    n_bins : int, default=10
        Quantile bins per numeric column when scoring rows.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from attnmoe.tabular import AttentionMoEClassifier, AtypicalHoldout
    >>> search = GridSearchCV(AttentionMoEClassifier(), {"epochs": [200, 100, 400]},
    ...                       cv=AtypicalHoldout(0.25))  # doctest: +SKIP
    """

    def __init__(self, test_size: float = 0.25, n_bins: int = 10) -> None:
        self.test_size = test_size
        self.n_bins = n_bins

    def _iter_test_indices(self, X=None, y=None, groups=None) -> Iterator[np.ndarray]:
        if not 0.0 < self.test_size < 1.0:
            raise ValueError(f"test_size must be in (0, 1), got {self.test_size}")
        scores = pair_typicality(X, n_bins=self.n_bins)
        n_test = round(self.test_size * len(scores))
        if not 1 <= n_test < len(scores):
            raise ValueError(
                f"test_size={self.test_size} of {len(scores)} rows leaves an empty train or "
                "validation set"
            )
        yield np.sort(np.argsort(scores, kind="stable")[:n_test])

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """The number of splits: always 1.

        Parameters
        ----------
        X, y, groups : object
            Ignored; present for the scikit-learn splitter API.

        Returns
        -------
        int
        """
        return 1
