"""Rows of a table as sentences: every column is a word location.

Each column's values become category codes ``0..n_c-1`` shared across columns
(the paper's scheme: location tells columns apart, so code ``k`` of column
``c`` and code ``k`` of column ``c'`` are different (location, word) pairs).
Numeric columns are cut into quantile bins unless they hold whole numbers with
at most ``max_categories`` distinct values (those are categories).
Missing or unseen values become the mask token.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def _label_text(value) -> str:
    """A label as text, numbers in one canonical spelling (``1``, ``1.0``, ``"1.0"`` -> ``"1"``),
    booleans too (``True``, ``"true"``, ``"TRUE"`` -> ``"True"``: pandas reads all as True)."""
    if isinstance(value, str):
        if value in ("true", "TRUE", "false", "FALSE"):
            return value.capitalize()
        try:
            return str(int(value))  # exact, however many digits
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            return value
        return _label_text(number) if np.isfinite(number) else value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = str(value)  # numpy's shortest spelling in the value's own precision: float32 0.1 -> 0.1
    if np.isfinite(float(value)) and float(value).is_integer():
        return str(int(float(value)))
    return text


def label_indices(classes, labels) -> np.ndarray:
    """Index of each label in ``classes``; -1 for a label not among them or missing.

    Labels match by value first (``1``, ``1.0`` and ``np.int64(1)`` are one label,
    as a target column read with a gap comes back as floats), then by their text
    with numbers spelt one way (``"1"``, ``"1.0"`` and ``1.0`` match class ``1``
    and class ``"1.0"``; float32 ``0.1`` matches ``0.1``), so labels read from a
    CSV match a model fitted on typed data. Where several classes share that text
    (``"01"`` and ``"1"``), the one spelt as the label is taken, else the one
    spelt canonically, else none. Missing labels (None, NaN, NA) get -1 too;
    callers that must tell them apart test ``pandas.isna``.
    """
    by_value: dict = {}
    by_text: dict[str, list[int]] = {}
    spelt = [str(c) for c in classes]
    for k, c in enumerate(classes):
        # numpy numbers as Python ones, so 1.0 finds 1; datetimes stay datetimes
        value = c.item() if isinstance(c, (np.number, np.bool_)) else c
        by_value.setdefault(value, k)
        by_text.setdefault(_label_text(c), []).append(k)
    values = np.asarray(labels, dtype=object).reshape(-1)
    index = np.full(len(values), -1, dtype=np.int64)
    for i in np.flatnonzero(~pd.isna(values)):
        v = values[i]
        key = v.item() if isinstance(v, (np.number, np.bool_)) else v
        k = by_value.get(key) if isinstance(key, Hashable) else None
        if k is None:
            text = _label_text(v)
            candidates = by_text.get(text, [])
            if len(candidates) > 1:  # ambiguous by canonical text: go by spelling
                exact = [j for j in candidates if spelt[j] == str(v)]
                candidates = exact or [j for j in candidates if spelt[j] == text]
            k = candidates[0] if len(candidates) == 1 else -1
        index[i] = k
    return index


def _category_codes(categories: list, series: pd.Series) -> np.ndarray:
    """:func:`label_indices` of a column, worked out once per distinct value (typed:
    ``True`` and ``1`` stay apart) and spread back over the cells."""
    values = series.to_numpy(dtype=object)
    distinct: dict = {}
    try:
        inverse = np.fromiter(
            (distinct.setdefault((type(v), v), len(distinct)) for v in values),
            dtype=np.int64,
            count=len(values),
        )
    except TypeError:  # an unhashable cell (a list): no shortcut
        return label_indices(categories, values)
    return label_indices(categories, [v for _, v in distinct])[inverse]


@dataclass
class ColumnCoding:
    """How one column's values map to codes."""

    name: str
    kind: str  # "categorical" or "binned"
    categories: list = field(default_factory=list)  # categorical: code -> value
    edges: np.ndarray | None = None  # binned: inner quantile edges
    representatives: np.ndarray | None = None  # binned: a typical value per bin

    @property
    def n_codes(self) -> int:
        return len(self.categories) if self.kind == "categorical" else len(self.edges) + 1


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not (
        isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(series.dtype)
    )


def _is_whole(series: pd.Series) -> bool:
    # integers stored as floats (pandas does this to an int column with gaps)
    values = series.dropna().to_numpy(dtype=float)
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _sorted_values(values: pd.Series) -> list:
    unique = pd.unique(values.dropna())
    try:
        return sorted(unique)
    except TypeError:  # mixed types: a stable, deterministic order
        return sorted(unique, key=lambda v: (type(v).__name__, str(v)))


class TableEncoder:
    """Fit on a training table; encode any table with the same columns to codes.

    Parameters
    ----------
    n_bins
        Quantile bins for float columns (and integer columns with more than
        ``max_categories`` distinct values).
    max_categories
        Whole-number columns with at most this many distinct values are categories.
    """

    def __init__(self, n_bins: int = 10, max_categories: int = 50) -> None:
        self.n_bins = n_bins
        self.max_categories = max_categories

    def fit(self, frame: pd.DataFrame) -> TableEncoder:
        for name, value, low in (
            ("n_bins", self.n_bins, 1),
            ("max_categories", self.max_categories, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.columns_: list[ColumnCoding] = []
        for name in frame.columns:
            series = frame[name]
            binned = _is_numeric(series) and (
                not _is_whole(series) or series.nunique() > self.max_categories
            )
            if binned:
                self.columns_.append(self._fit_bins(str(name), series.astype(float)))
            else:
                if isinstance(series.dtype, pd.CategoricalDtype):
                    categories = list(series.cat.categories)
                else:
                    categories = _sorted_values(series)
                self.columns_.append(ColumnCoding(str(name), "categorical", categories))
        return self

    def _fit_bins(self, name: str, values: pd.Series) -> ColumnCoding:
        finite = values[np.isfinite(values)]
        if finite.empty:
            return ColumnCoding(name, "binned", edges=np.array([]), representatives=np.zeros(1))
        quantiles = np.quantile(finite, np.linspace(0, 1, self.n_bins + 1)[1:-1])
        edges = np.unique(quantiles)
        edges = edges[edges > finite.min()]
        # No empty bins (a bin's value is its median, and a code without rows would
        # be a value never seen): an edge at the minimum (many ties there) leaves
        # nothing below it, and interpolated quantiles can fall in a gap of the data.
        # Keep only the edges that open a bin holding rows; bin 0 holds the minimum.
        codes = np.searchsorted(edges, finite, side="right")
        occupied = np.unique(codes)
        edges = edges[occupied[occupied > 0] - 1]
        codes = np.searchsorted(edges, finite, side="right")
        representatives = np.array([np.median(finite[codes == c]) for c in range(len(edges) + 1)])
        return ColumnCoding(name, "binned", edges=edges, representatives=representatives)

    @property
    def n_codes(self) -> int:
        """Size of the shared code vocabulary (the largest column's)."""
        return max(c.n_codes for c in self.columns_) if self.columns_ else 1

    def encode(self, frame: pd.DataFrame, mask_id: int, warn: bool = True) -> np.ndarray:
        """Codes ``(n, n_columns)``; missing or unseen values become ``mask_id``."""
        out = np.full((len(frame), len(self.columns_)), mask_id, dtype=np.int64)
        n_missing = n_unseen = 0
        for j, coding in enumerate(self.columns_):
            series = frame.iloc[:, j]
            missing = series.isna().to_numpy()
            if coding.kind == "binned":
                values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
                ok = np.isfinite(values)
                out[ok, j] = np.searchsorted(coding.edges, values[ok], side="right")
                n_unseen += int((~ok & ~missing).sum())
            else:
                # by value, then by text with numbers spelt one way: a column read from
                # another CSV as text ("1") or as numbers (1) finds the same category
                codes = _category_codes(coding.categories, series)
                known = codes >= 0
                out[known, j] = codes[known]
                n_unseen += int((~known & ~missing).sum())
            n_missing += int(missing.sum())
        if warn and (n_missing or n_unseen):
            warnings.warn(
                f"{n_missing} missing and {n_unseen} unseen values were replaced by the mask "
                "token; predictions still use the other columns",
                UserWarning,
                stacklevel=3,
            )
        return out

    def decode(self, j: int, codes: np.ndarray) -> np.ndarray:
        """Values for codes of column ``j`` (bin medians for binned columns)."""
        coding = self.columns_[j]
        if coding.kind == "binned":
            return coding.representatives[codes]
        return np.array(coding.categories, dtype=object)[codes]
