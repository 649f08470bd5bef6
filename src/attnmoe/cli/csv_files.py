"""CSV files in and out as written, for ``attnmoe fit``, ``predict`` and ``impute``.

pandas types the cells it reads (``007`` becomes 7, ``true`` True, ``NA`` a
missing value); the commands hand the typed table to the model but write back
the cells as the file had them, and write every output through a temporary
file renamed into place, so an interrupted command never leaves half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def read_table(path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DATA twice: as pandas types it (for the model) and as written (for the output).

    Columns that only pass through (ids, zip codes, "NA" country codes, long
    integers with gaps) are written back exactly as they were read.
    """
    try:
        typed = pd.read_csv(path)
        text = pd.read_csv(path, dtype=str, keep_default_na=False)
        # the header as written (pandas renames repeated names), read the same way
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
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
    return typed, text


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


def write_csv(frame: pd.DataFrame, path: str) -> None:
    """Write ``frame`` to ``path`` through a temporary file renamed into place."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"--out {target} is a folder; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            frame.to_csv(fh, index=False)
        umask = os.umask(0)  # mkstemp makes the file private; give it the usual permissions
        os.umask(umask)
        os.chmod(staging, 0o666 & ~umask)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


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


__all__ = ["labels_as_written", "read_table", "spell_filled", "write_csv"]
