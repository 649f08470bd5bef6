"""Rows of a table as sentences: every column is a word location.

Each column's values become codes ``0..n_c-1`` shared across columns (the
paper's scheme: location tells columns apart, so code ``k`` of column ``c`` and
code ``k`` of column ``c'`` are different (location, word) pairs).

Columns are typed by their dtype:

- **numeric** (numbers, not bool, not pandas categorical): ordered. The column
  has knots ``v_0 < ... < v_{K-1}`` and a value's code is its position between
  them, ``np.interp(value, knots, 0..K-1)``: a value between two knots gets a
  fractional code (the model mixes the two knots' word embeddings linearly,
  docs/math.md), a value outside the training range is clipped to the nearest
  edge. Whole-number columns with at most ``max_categories`` distinct values
  have a knot at every distinct training value (each seen value gets the whole
  code a category would have); other numeric columns have ``n_bins`` knots at
  evenly spaced training quantiles.
- **categorical** (text, bool, pandas categorical, anything else): unordered;
  one code per training value. A number column declared categorical (for
  example ``astype("category")``) is unordered.

Missing values, non-finite numbers and unseen categories become the mask token.

A table too large for memory is learnt in one pass over chunks of its rows
(:meth:`TableEncoder.fit_chunks`): categories as a running set, numeric knots
from a seeded sample of each column's values of bounded size; the same encoder
as :meth:`TableEncoder.fit` whenever a column has no more values than the sample
holds.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable
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
    """How one column's values map to codes.

    ``kind`` is ``"numeric"`` (ordered: codes interpolate between ``knots``),
    ``"categorical"`` (one code per value of ``categories``) or ``"binned"``
    (quantile bins with ``edges``, one code per bin: columns of models saved
    before numeric columns existed, and :class:`TableEncoder` ``numeric="bins"``).
    """

    name: str
    kind: str  # "numeric", "categorical" or "binned"
    categories: list = field(default_factory=list)  # categorical: code -> value
    edges: np.ndarray | None = None  # binned: inner quantile edges
    representatives: np.ndarray | None = None  # binned: a typical value per bin
    knots: np.ndarray | None = None  # numeric: increasing values at codes 0..K-1

    @property
    def n_codes(self) -> int:
        if self.kind == "numeric":
            return len(self.knots)
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


def _numbers(series: pd.Series) -> np.ndarray:
    """A column's cells as float64; text that is no number (and missing cells) as NaN."""
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def interpolated_codes(knots: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int]:
    """``np.interp(values, knots, 0..K-1)`` of finite values (outside the knots: the
    nearest edge's code), and how many values were outside."""
    codes = np.interp(values, knots, np.arange(len(knots), dtype=float))
    # np.interp's slope * offset may round a hair past the next knot's code: a code
    # must never reach beyond the column's last one (nor, interpolating, the mask id)
    codes = np.clip(codes, 0.0, float(len(knots) - 1))
    return codes, int(np.sum((values < knots[0]) | (values > knots[-1])))


#: finite values of a numeric column kept by :meth:`TableEncoder.fit_chunks` for its
#: quantile knots: a knot's rank is then off by about 1 / sqrt(KNOT_SAMPLE) (0.3 %) of
#: the column at most, far finer than the 10 knots' spacing, in 0.8 MB per column
KNOT_SAMPLE = 100_000


class _ColumnSketch:
    """What :meth:`TableEncoder.fit_chunks` keeps of one column over the chunks.

    Numeric knots come from a bounded sample, not a mergeable quantile sketch
    (t-digest, KLL): a sample holds values the column has, so the knots stay
    values of the column (``method="nearest"``, as :meth:`TableEncoder.fit`), and
    when the column has no more values than the sample holds the sample is the
    column and the knots are exact. The sample is a bottom-k sample: every finite
    value draws a uniform key from the column's own generator, the ``size``
    smallest keys are kept. The draws follow the rows, so the sample is the same
    however the rows are cut into chunks, and samples merge by keeping the
    smallest keys of both.
    """

    def __init__(self, name: str, max_categories: int, size: int, seed: tuple[int, int]):
        self.name, self.max_categories, self.size = name, max_categories, size
        self.rng = np.random.default_rng(seed)
        self.numeric: bool | None = None  # decided by the first chunk with a value
        self.first_chunk_numeric: bool | None = None  # for a column without any value
        # numeric columns
        self.whole = True  # every value a finite whole number
        self.distinct: np.ndarray | None = np.array([])  # None: more than max_categories
        self.n_finite = 0
        self.low, self.high = np.inf, -np.inf  # the exact range, for the end knots
        self.sample, self.keys = np.array([]), np.array([])
        # categorical columns
        self.values: pd.Series | None = None  # distinct values in order of appearance
        self.dtypes: list[pd.CategoricalDtype | None] = []

    def update(self, series: pd.Series, chunk: int) -> None:
        numeric = _is_numeric(series)
        if self.first_chunk_numeric is None:
            self.first_chunk_numeric = numeric
        present = series.dropna()
        if present.empty and not isinstance(series.dtype, pd.CategoricalDtype):
            return  # an empty chunk of the column tells nothing of its type
        if self.numeric is None:
            self.numeric = numeric
        elif numeric != self.numeric:
            kinds = ("text", "numbers") if numeric else ("numbers", "text")
            raise ValueError(
                f"column {self.name!r} reads as {kinds[0]} in the first chunks and as "
                f"{kinds[1]} in chunk {chunk}: give it one type in every chunk (as "
                "categories: a categorical dtype in each, or attnmoe fit --categorical)"
            )
        if numeric:
            self._update_numbers(present.to_numpy(dtype=float))
        else:
            self._update_categories(series, present)

    def _update_numbers(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        if self.whole and not (len(finite) == len(values) and np.all(finite == np.round(finite))):
            self.whole, self.distinct = False, None
        if self.distinct is not None:
            self.distinct = np.unique(np.concatenate([self.distinct, finite]))
            if len(self.distinct) > self.max_categories:
                self.distinct = None
        self.n_finite += len(finite)
        if len(finite):
            self.low, self.high = min(self.low, finite.min()), max(self.high, finite.max())
        keys = self.rng.random(len(finite))
        self.sample = np.concatenate([self.sample, finite])
        self.keys = np.concatenate([self.keys, keys])
        if len(self.sample) > self.size:
            keep = np.argpartition(self.keys, self.size - 1)[: self.size]
            self.sample, self.keys = self.sample[keep], self.keys[keep]

    def _update_categories(self, series: pd.Series, present: pd.Series) -> None:
        is_categorical = isinstance(series.dtype, pd.CategoricalDtype)
        self.dtypes.append(series.dtype if is_categorical else None)
        new = pd.Series(series.cat.categories) if is_categorical else present
        both = new if self.values is None else pd.concat([self.values, new], ignore_index=True)
        self.values = pd.Series(pd.unique(both), dtype=both.dtype)

    def coding(self, n_bins: int) -> ColumnCoding:
        """The column's coding, as :meth:`TableEncoder.fit` would give it."""
        numeric = self.first_chunk_numeric if self.numeric is None else self.numeric
        if numeric:
            if not self.n_finite or (self.whole and self.distinct is not None):
                knots = self.distinct if self.distinct is not None else np.array([])
                return ColumnCoding(self.name, "numeric", knots=knots)
            quantiles = np.quantile(self.sample, np.linspace(0, 1, n_bins), method="nearest")
            # the end knots are the column's range, not the sample's: no value of the
            # training rows is clipped (the same knots when the sample holds them all)
            quantiles[-1], quantiles[0] = self.high, self.low  # one knot (n_bins=1): the low
            return ColumnCoding(self.name, "numeric", knots=np.unique(quantiles))
        if self.values is None:
            return ColumnCoding(self.name, "categorical", [])
        dtype = self.dtypes[0]
        same = all(d is not None and d.categories.equals(dtype.categories) for d in self.dtypes)
        if dtype is not None and same:  # one list of categories throughout, in one order
            return ColumnCoding(self.name, "categorical", list(dtype.categories))
        return ColumnCoding(self.name, "categorical", _sorted_values(self.values))


class TableEncoder:
    """Fit on a training table; encode any table with the same columns to codes.

    Parameters
    ----------
    n_bins
        Knots (quantiles) of numeric columns that are not whole numbers with at
        most ``max_categories`` distinct values; the column's vocabulary size.
    max_categories
        Whole-number columns with at most this many distinct values have a knot
        at every distinct value.
    numeric
        ``"interpolate"``: numeric columns keep their order (kind ``"numeric"``,
        fractional codes between knots, values outside the range clipped).
        ``"bins"``: the coding before numeric columns existed (unordered
        categories for whole numbers with few levels, else ``n_bins`` quantile
        bins, kind ``"binned"``), always whole codes, for callers that count
        values (:func:`attnmoe.tabular.shift.pair_typicality`).
    """

    def __init__(
        self, n_bins: int = 10, max_categories: int = 50, numeric: str = "interpolate"
    ) -> None:
        self.n_bins = n_bins
        self.max_categories = max_categories
        self.numeric = numeric

    def _check_params(self) -> None:
        for name, value, low in (
            ("n_bins", self.n_bins, 1),
            ("max_categories", self.max_categories, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.numeric not in ("interpolate", "bins"):
            raise ValueError(f"numeric must be 'interpolate' or 'bins', got {self.numeric!r}")

    def fit(self, frame: pd.DataFrame) -> TableEncoder:
        self._check_params()
        self.columns_: list[ColumnCoding] = []
        for name in frame.columns:
            series = frame[name]
            if _is_numeric(series) and self.numeric == "interpolate":
                self.columns_.append(self._fit_knots(str(name), series.astype(float)))
                continue
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

    def fit_chunks(
        self, chunks: Iterable[pd.DataFrame], sample_size: int = KNOT_SAMPLE, seed: int = 0
    ) -> TableEncoder:
        """Fit in one pass over chunks of a table's rows (DataFrames with the same columns).

        Categorical columns collect their values as a running set (a column's
        categories are those of its pandas categorical dtype when every chunk has
        the same one, else the sorted values seen). Numeric columns keep whether
        every value is a whole number, their distinct values while there are at
        most ``max_categories``, their exact range, and a uniform sample of at most
        ``sample_size`` finite values, seeded by ``seed``: quantile knots are taken
        from the sample, the first and last at the column's minimum and maximum.
        A column holding no more finite values than ``sample_size`` is coded
        exactly as :meth:`fit` codes it: the encoder then equals the one fit on all
        rows at once. The sample does not depend on how the rows are cut into
        chunks. Only ``numeric="interpolate"`` (the estimators' coding).

        Raises
        ------
        ValueError
            No chunk, chunks whose columns differ, or a column read as numbers in
            one chunk and as text in another.
        """
        self._check_params()
        if self.numeric != "interpolate":
            raise ValueError("fit_chunks codes numeric columns by knots: numeric='interpolate'")
        if isinstance(sample_size, bool) or not isinstance(sample_size, (int, np.integer)):
            raise ValueError(f"sample_size must be an integer >= 1, got {sample_size!r}")
        if sample_size < 1:
            raise ValueError(f"sample_size must be an integer >= 1, got {sample_size!r}")
        sketches: list[_ColumnSketch] | None = None
        names: list = []
        for k, frame in enumerate(chunks):
            if sketches is None:
                names = list(frame.columns)
                sketches = [
                    _ColumnSketch(str(name), self.max_categories, sample_size, (seed, j))
                    for j, name in enumerate(names)
                ]
            elif list(frame.columns) != names:
                raise ValueError(
                    f"chunk {k} has columns {list(frame.columns)}; the first had {names}"
                )
            for sketch, name in zip(sketches, names, strict=True):
                sketch.update(frame[name], k)
        if sketches is None:
            raise ValueError("no chunks to fit the encoder on")
        self.columns_ = [sketch.coding(self.n_bins) for sketch in sketches]
        return self

    def _fit_knots(self, name: str, values: pd.Series) -> ColumnCoding:
        finite = values[np.isfinite(values)].to_numpy()
        distinct = np.unique(finite)
        if not len(finite) or (_is_whole(values) and len(distinct) <= self.max_categories):
            # every seen value a knot: its code is the code it has as a category
            return ColumnCoding(name, "numeric", knots=distinct)
        # quantiles that are values of the column ("nearest"): every knot is a value
        # the column holds, so a decoded whole code is one too
        quantiles = np.quantile(finite, np.linspace(0, 1, self.n_bins), method="nearest")
        return ColumnCoding(name, "numeric", knots=np.unique(quantiles))

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
        """Codes ``(n, n_columns)``: int64 when every code is whole, else float64.

        Missing values, non-finite numbers and unseen categories become
        ``mask_id``; numeric values outside a column's knots are clipped to its
        first or last code. With ``warn``, one warning counts the masked and the
        clipped values.
        """
        out = np.full((len(frame), len(self.columns_)), float(mask_id))
        n_missing = n_unseen = n_clipped = 0
        for j, coding in enumerate(self.columns_):
            series = frame.iloc[:, j]
            missing = series.isna().to_numpy()
            if coding.kind in ("numeric", "binned"):
                values = _numbers(series)
                ok = np.isfinite(values) & (coding.n_codes > 0)
                if coding.kind == "binned":
                    out[ok, j] = np.searchsorted(coding.edges, values[ok], side="right")
                elif ok.any():
                    out[ok, j], clipped = interpolated_codes(coding.knots, values[ok])
                    n_clipped += clipped
                n_unseen += int((~ok & ~missing).sum())
            else:
                # by value, then by text with numbers spelt one way: a column read from
                # another CSV as text ("1") or as numbers (1) finds the same category
                codes = _category_codes(coding.categories, series)
                known = codes >= 0
                out[known, j] = codes[known]
                n_unseen += int((~known & ~missing).sum())
            n_missing += int(missing.sum())
        if warn and (n_missing or n_unseen or n_clipped):
            warnings.warn(
                _encode_warning(n_missing, n_unseen, n_clipped), UserWarning, stacklevel=3
            )
        return out.astype(np.int64) if np.all(out == np.floor(out)) else out

    def decode(self, j: int, codes: np.ndarray) -> np.ndarray:
        """Values for codes of column ``j``: the value at the code for a numeric
        column (interpolated between knots), the bin median for a binned one."""
        coding = self.columns_[j]
        if coding.kind == "numeric":
            return np.interp(codes, np.arange(coding.n_codes), coding.knots)
        if coding.kind == "binned":
            return coding.representatives[codes]
        return np.array(coding.categories, dtype=object)[codes]


def _encode_warning(n_missing: int, n_unseen: int, n_clipped: int) -> str:
    parts = []
    if n_missing or n_unseen:
        parts.append(
            f"{n_missing} missing and {n_unseen} unseen values were replaced by the mask "
            "token; predictions still use the other columns"
        )
    if n_clipped:
        parts.append(
            f"{n_clipped} numeric values outside the training range were clipped to its "
            "nearest edge"
        )
    return "; ".join(parts)
