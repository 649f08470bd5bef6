"""The pilot's split: training rows and the new rows, by one shift definition.

Exactly one of three definitions says which rows are "new":

- segments: ``split_by`` a column, ``train`` the values whose rows train; every
  other row is new;
- time: ``time`` a column and a ``cutoff``; rows before it train, rows at or
  after it are new (numbers compare as numbers, anything else is read as dates);
- a second file: ``new`` holds the new rows.

Every model sees the same feature frame (as the real-table benchmark's,
:func:`attnmoe.bench.real_tables.make_real_split`): text, boolean and category
columns become pandas categoricals (the categories of both sides, so both frames
share one dtype), numbers become floats. Rows without a label, or with a missing
feature cell, are left out of both sides (not every alternative model takes gaps),
and said. The split column leaves the features when it is constant on either
side (it would teach nothing, or be a value never seen in training), and a date
column always does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["PilotSplit", "make_split", "shift_definition"]


@dataclass
class PilotSplit:
    """Training rows and new rows, features typed alike, labels as text."""

    X_train: pd.DataFrame
    y_train: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series
    target: str
    #: the shift in words, e.g. "train: origin in [USA]; new rows: the others"
    description: str
    group_train: pd.Series | None = None
    group_test: pd.Series | None = None
    #: what was left out on the way, one line each
    notes: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        return [str(c) for c in self.X_train.columns]


def shift_definition(
    split_by: str | None = None,
    train: Sequence[str] | None = None,
    time: str | None = None,
    cutoff: str | None = None,
    new: object | None = None,
) -> str:
    """Which definition is given: ``"split_by"``, ``"time"`` or ``"new"``.

    Raises
    ------
    ValueError
        None or more than one given, or one given by half (``--split-by`` without
        ``--train``, ``--time`` without ``--cutoff``, or the other way round).
    """
    given = [
        name
        for name, parts in (
            ("split_by", (split_by, train)),
            ("time", (time, cutoff)),
            ("new", (new,)),
        )
        if any(p is not None for p in parts)
    ]
    if len(given) != 1:
        what = "none" if not given else " and ".join(_OPTION[g] for g in given)
        raise ValueError(
            "give exactly one shift definition: --split-by COL --train VALUE [VALUE ...], "
            f"--time COL --cutoff VALUE, or --new NEW.csv (got {what})"
        )
    if given == ["split_by"] and (split_by is None or not train):
        raise ValueError("--split-by COL and --train VALUE [VALUE ...] go together")
    if given == ["time"] and (time is None or cutoff is None):
        raise ValueError("--time COL and --cutoff VALUE go together")
    return given[0]


_OPTION = {"split_by": "--split-by", "time": "--time", "new": "--new"}


def _require(frame: pd.DataFrame, columns: Sequence[str | None], where: str) -> None:
    for column in columns:
        if column is not None and column not in frame.columns:
            raise ValueError(f"{where} has no column {column!r}; it has {list(frame.columns)}")


def _segment_mask(column: pd.Series, values: Sequence[str]) -> np.ndarray:
    """Rows whose value is one of ``values`` (text as typed on a command line)."""
    mask = column.astype(str).isin([str(v) for v in values]).to_numpy()
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        numbers = pd.to_numeric(pd.Series(list(values)), errors="coerce").dropna()
        mask = mask | column.isin(numbers.to_list()).to_numpy()  # "3" matches 3.0
    return mask


def _as_time(column: pd.Series, cutoff: str, name: str) -> tuple[pd.Series, object, bool]:
    """The column and the cutoff as comparable values; whether they are dates."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        try:
            return column, float(cutoff), False
        except ValueError:
            pass  # a date cutoff on numbers: read both as dates below
    try:
        dates = pd.to_datetime(column.astype(str), errors="raise", format="mixed")
        limit = pd.Timestamp(cutoff)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"--time {name!r} --cutoff {cutoff!r}: cannot read them as numbers or dates ({err})"
        ) from None
    if dates.dt.tz is not None and limit.tz is None:
        limit = limit.tz_localize(dates.dt.tz)
    return dates, limit, True


def _side_masks(
    data: pd.DataFrame,
    kind: str,
    split_by: str | None,
    train: Sequence[str] | None,
    time: str | None,
    cutoff: str | None,
) -> tuple[np.ndarray, np.ndarray, str, bool]:
    """Training and new rows of one table; the shift in words; whether the column is dates."""
    if kind == "split_by":
        column = data[split_by]
        in_train = _segment_mask(column, train or [])
        if not in_train.any():
            seen = sorted(map(str, column.dropna().unique()))[:20]
            raise ValueError(
                f"--train {list(train or [])}: no row has {split_by!r} among them "
                f"(its values: {seen})"
            )
        known = column.notna().to_numpy()
        chosen = " or ".join(map(str, train or []))
        words = f"train: {split_by} = {chosen}; new rows: every other {split_by}"
        return in_train, known & ~in_train, words, False
    values, limit, dates = _as_time(data[time], str(cutoff), str(time))
    known = values.notna().to_numpy()
    before = known & (values < limit).to_numpy()
    words = f"train: {time} before {cutoff}; new rows: {time} from {cutoff} on"
    return before, known & ~before, words, dates


def _usable(frame: pd.DataFrame, target: str, features: list[str]) -> tuple[np.ndarray, int, int]:
    """Rows with a label and every feature cell; the counts of the two kinds left out."""
    labelled = frame[target].notna().to_numpy()
    complete = frame[features].notna().all(axis=1).to_numpy()
    return labelled & complete, int((~labelled).sum()), int((labelled & ~complete).sum())


def _labels(values: pd.Series) -> pd.Series:
    """Labels (or groups) as text; whole numbers without a ``.0``: a column with gaps
    reads as floats, and one class must not be "1" in one file and "1.0" in the other."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and (values % 1 == 0).all():
        values = values.astype("int64")
    return values.astype(str).reset_index(drop=True)


def _typed(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Numbers as floats, everything else as categoricals over both sides' values."""
    X_train, X_test = pd.DataFrame(index=train.index), pd.DataFrame(index=test.index)
    for column in train.columns:
        a, b = train[column], test[column]
        numeric = all(
            pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) for s in (a, b)
        )
        if numeric:
            X_train[column], X_test[column] = a.astype(float), b.astype(float)
            continue
        a, b = a.astype(str), b.astype(str)
        categories = sorted(set(a) | set(b))
        X_train[column] = pd.Categorical(a, categories=categories)
        X_test[column] = pd.Categorical(b, categories=categories)
    return X_train.reset_index(drop=True), X_test.reset_index(drop=True)


def make_split(
    data: pd.DataFrame,
    target: str,
    *,
    split_by: str | None = None,
    train: Sequence[str] | None = None,
    time: str | None = None,
    cutoff: str | None = None,
    new: pd.DataFrame | None = None,
    group: str | None = None,
    drop: Sequence[str] = (),
) -> PilotSplit:
    """Split ``data`` (and ``new``) into the pilot's training rows and new rows.

    Parameters
    ----------
    data : DataFrame
        The table, with the target column.
    target : str
        The class column. With ``new``, both tables must have it (the new rows
        are scored against their labels).
    split_by, train : str and sequence of str, optional
        Segments: rows whose ``split_by`` value is in ``train`` train (values as
        text: ``"3"`` matches the number 3); the others are new.
    time, cutoff : str, optional
        Rows with ``time`` below ``cutoff`` train; the rest are new.
    new : DataFrame, optional
        The new rows, a second table with ``data``'s feature columns.
    group : str, optional
        A column of fairness groups, kept beside the features (and among them,
        unless dropped).
    drop : sequence of str
        Columns that are not features (ids, free text).

    Returns
    -------
    PilotSplit

    Raises
    ------
    ValueError
        One line: no or two shift definitions, a missing column, an empty side,
        a target with fewer than two classes in training.
    """
    kind = shift_definition(split_by, train, time, cutoff, new)
    _require(data, [target, split_by, time, group, *drop], "DATA")
    if new is not None:
        _require(new, [target], "--new")
    dates = False
    if new is None:
        in_train, in_test, words, dates = _side_masks(data, kind, split_by, train, time, cutoff)
        train_rows, test_rows = data[in_train], data[in_test]
    else:
        train_rows, test_rows, words = data, new, "train: DATA; new rows: the --new file"
    features = [c for c in data.columns if c != target and c not in drop]
    _require(
        test_rows, [*features, *([group] if group else [])], "--new" if new is not None else "DATA"
    )
    shifted = split_by if kind == "split_by" else time
    notes = []
    if shifted is not None and shifted in features:
        constant = train_rows[shifted].nunique() <= 1 or test_rows[shifted].nunique() <= 1
        if constant or dates:
            features.remove(shifted)
            notes.append(
                f"{shifted!r} left out of the features ("
                + ("dates" if dates else "one value on a side")
                + ")"
            )
    if not features:
        raise ValueError("no feature columns left besides the target, the split and --drop")
    sides = {}
    for side, rows in (("training", train_rows), ("new", test_rows)):
        keep, unlabelled, incomplete = _usable(rows, target, features)
        if unlabelled or incomplete:
            notes.append(
                f"{side} rows left out: {unlabelled:,} without a label, "
                f"{incomplete:,} with a missing feature cell"
            )
        if not keep.any():
            raise ValueError(f"no usable {side} rows ({words}): every side needs labelled rows")
        sides[side] = rows[keep]
    y_train = _labels(sides["training"][target])
    if y_train.nunique() < 2:
        raise ValueError(
            f"the target {target!r} has one value in the training rows: nothing to learn"
        )
    X_train, X_test = _typed(sides["training"][features], sides["new"][features])
    groups = [None, None]
    if group is not None:
        groups = [_labels(sides[s][group]) for s in ("training", "new")]
    return PilotSplit(
        X_train=X_train,
        y_train=y_train.rename(target),
        X_test=X_test,
        y_test=_labels(sides["new"][target]).rename(target),
        target=target,
        description=words,
        group_train=groups[0],
        group_test=groups[1],
        notes=notes,
    )
