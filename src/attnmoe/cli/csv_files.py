"""CSV files in and out as written, for ``attnmoe fit``, ``predict`` and ``impute``.

pandas types the cells it reads (``007`` becomes 7, ``true`` True, ``NA`` a
missing value); the commands hand the typed table to the model but write back
the cells as the file had them (outputs are written by :mod:`attnmoe.cli.outputs`).
The delimiter is ``--sep`` or sniffed from the first lines.
"""

from __future__ import annotations

import argparse
import csv
import warnings

import numpy as np
import pandas as pd

#: bytes of DATA the delimiter is sniffed from when --sep is not given
_SNIFF_BYTES = 64 * 1024
_SEPARATORS = ",;\t|"


def sniff_separator(path: str) -> str:
    """The delimiter of the CSV at ``path``: comma, semicolon, tab or ``|``.

    :class:`csv.Sniffer` reads the first lines; a header with a comma in it keeps the
    comma (a semicolon inside a quoted name does not make a semicolon file), and a
    file it cannot decide on (one column) is read with commas.
    """
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            sample = fh.read(_SNIFF_BYTES)
    except (OSError, UnicodeDecodeError):
        return ","  # pandas says what is wrong with the file, in its own words
    lines = sample.splitlines()
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        sample = "\n".join(lines[:-1])  # a line cut by the sample's end would mislead it
    try:
        sep = csv.Sniffer().sniff(sample, delimiters=_SEPARATORS).delimiter
    except csv.Error:
        return ","
    header = lines[0] if lines else ""
    return "," if sep != "," and "," in header else sep


def _separator(path: str, sep: str | None) -> str:
    if sep is not None:
        sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep)  # a tab is hard to type in a shell
        if len(sep) != 1:
            raise ValueError(f"--sep must be one character, got {sep!r}")
        return sep
    sep = sniff_separator(path)
    if sep != ",":
        print(f"{path}: columns separated by {_SEP_NAMES.get(sep, repr(sep))} (sniffed; --sep)")
    return sep


_SEP_NAMES = {";": "';'", "\t": "tabs", "|": "'|'"}


def read_table(path: str, sep: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DATA twice: as pandas types it (for the model) and as written (for the output).

    Columns that only pass through (ids, zip codes, "NA" country codes, long
    integers with gaps) are written back exactly as they were read. ``sep`` is
    the delimiter; without it, :func:`sniff_separator` picks one (said in one line
    when not a comma). Repeated column names are refused, and ``inf`` / ``-inf``
    cells are said in one warning per column (the model masks them like missing cells).
    """
    sep = _separator(path, sep)
    try:
        typed = pd.read_csv(path, sep=sep)
        text = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        # the header as written (pandas renames repeated names), read the same way
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{path}: {err}") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"{path} is not a readable CSV: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason}); save it as UTF-8") from None
    if typed.empty:
        raise ValueError(f"{path} has no rows")
    if not (isinstance(typed.index, pd.RangeIndex) and isinstance(text.index, pd.RangeIndex)):
        # pandas made the first cells an index: writing back would lose them
        raise ValueError(f"{path}: the header names fewer columns than the rows hold")
    names = list(header.iloc[0])
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # pandas would rename them (a, a.1): the output could not keep them
        raise ValueError(f"{path}: repeated column names {repeated}; make them unique")
    _check_split(names, sep, path)
    _warn_infinite(typed, path)
    return typed, text


def _check_split(names: list[str], sep: str, path: str) -> None:
    """A table read as one column whose name holds another delimiter was split wrongly."""
    if len(names) != 1:
        return
    others = [c for c in _SEPARATORS if c != sep and c in str(names[0])]
    if others:
        raise ValueError(
            f"{path} reads as one column {names[0]!r} with --sep {sep!r}: "
            f"did you mean --sep {others[0]!r}?"
        )


def _warn_infinite(typed: pd.DataFrame, path: str) -> None:
    """One warning per column holding ``inf`` / ``-inf``: the model masks them like gaps."""
    for name in typed.columns:
        column = typed[name]
        if pd.api.types.is_float_dtype(column):
            count = int(np.isinf(column.to_numpy(dtype=float)).sum())
            if count:
                warnings.warn(
                    f"{path}: column {name!r} has {count:,} inf/-inf cell(s); the model "
                    "masks them like missing cells",
                    UserWarning,
                    stacklevel=3,
                )


def add_sep(parser: argparse.ArgumentParser) -> None:
    """``--sep``: the CSV delimiter; sniffed when not given (:func:`sniff_separator`)."""
    parser.add_argument(
        "--sep",
        default=None,
        help="the CSV delimiter (default: sniffed from the first lines; comma if unsure)",
    )


def empty_columns(typed: pd.DataFrame, names: list[str]) -> list[str]:
    """The columns of ``names`` in which every cell is missing."""
    return [str(n) for n in names if typed[n].isna().all()]


def labels_as_written(typed: pd.Series, text: pd.Series) -> pd.Series:
    """A target column as labels, so that predictions are written as the labels were:
    whole numbers exactly (not through float), and as text where pandas would
    re-spell them (``007`` -> 7, ``true`` -> True, beyond 64 bits)."""
    # the text as written, when every label has one spelling (else "7" and "007", or
    # "true" and "TRUE", would become two classes: then pandas' typed labels)
    one_spelling = bool((text.groupby(typed.to_numpy()).nunique() == 1).all())
    if pd.api.types.is_bool_dtype(typed):
        return text if one_spelling and not text.isin(["True", "False"]).all() else typed
    if not pd.api.types.is_numeric_dtype(typed):
        return typed
    try:
        whole = text.map(int)  # "12" -> 12, exact however many digits
    except ValueError:  # "1.5", or "2.0": pandas' numbers, whole ones as integers
        exact = (typed % 1 == 0).all() and (typed.abs() < 2**53).all()
        return typed.astype("int64") if exact else typed
    if not whole.map(lambda v: -(2**63) <= v < 2**63).all():
        return text  # beyond 64 bits: the labels as written
    if one_spelling and not (whole.astype(str) == text).all():
        return text  # leading zeros, signs or spaces, one way each: keep them
    return whole.astype("int64")


def _as_written(value, whole: bool) -> str:
    """A filled value as CSV text: whole-number columns without a trailing ``.0``."""
    if whole and isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _nearest(seen: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each of ``values`` replaced by the nearest of the sorted ``seen`` values."""
    right = np.clip(np.searchsorted(seen, values), 0, len(seen) - 1)
    left = np.clip(right - 1, 0, len(seen) - 1)
    closer_left = np.abs(seen[left] - values) <= np.abs(seen[right] - values)
    return np.where(closer_left, seen[left], seen[right])


def spell_filled(observed: pd.Series, written: pd.Series, values: np.ndarray) -> list[str]:
    """Filled ``values`` of a column as the file writes them (``02139``, ``true``).

    ``observed`` / ``written``: the column's present cells, as pandas typed them and
    as the file has them. In a whole-number column a value the imputer made up (a
    bin's median between two values) becomes the nearest value the column holds.
    """
    spelling: dict = {}
    for value, text in zip(observed, written, strict=True):
        spelling.setdefault(value, text)
    whole = (
        pd.api.types.is_numeric_dtype(observed)
        and not pd.api.types.is_bool_dtype(observed)
        and bool((observed % 1 == 0).all())
    )
    if whole:
        values = _nearest(np.array(sorted(spelling)), values.astype(float))
    return [spelling.get(v, _as_written(v, whole)) for v in values]


__all__ = [
    "add_sep",
    "empty_columns",
    "labels_as_written",
    "read_table",
    "sniff_separator",
    "spell_filled",
]
