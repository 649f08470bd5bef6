"""A CSV or Parquet file read in chunks of rows, for ``attnmoe fit`` on large tables.

:class:`TableChunks` is re-iterable: each ``iter()`` reads the file again from its
first row and yields ``(X, y)`` chunks of the labelled rows, as
:meth:`~attnmoe.tabular.AttentionMoEClassifier.fit_chunks` reads them (twice), so
the whole table never sits in memory. CSV files are read with pandas
(``read_csv(chunksize=...)``), Parquet files with pyarrow (``iter_batches``).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator

import pandas as pd

from .csv_files import _separator, labels_as_written

#: files at least this large are read in chunks without --chunk-rows: as one
#: DataFrame (and, for a CSV, its text as written) they take many times their size
CHUNKED_BYTES = 256 * 2**20
#: rows per chunk when the size is not given
CHUNK_ROWS = 100_000


def is_parquet(path: str) -> bool:
    """Whether ``path`` names a Parquet file (by its extension)."""
    return str(path).lower().endswith((".parquet", ".pq"))


def read_in_chunks(path: str, chunk_rows: int | None) -> bool:
    """Whether ``attnmoe fit`` reads ``path`` in chunks: asked for, a Parquet file (read
    by pyarrow in batches), or a file of at least :data:`CHUNKED_BYTES`."""
    return chunk_rows is not None or is_parquet(path) or os.path.getsize(path) >= CHUNKED_BYTES


class TableChunks:
    """The labelled rows of a CSV or Parquet file as ``(X, y)`` chunks, re-readable.

    Parameters
    ----------
    path
        The file: Parquet when it ends in ``.parquet`` or ``.pq``, else CSV.
    target
        The label column; rows where it is missing are left out (counted in
        ``n_unlabelled``).
    drop
        Columns that are not features.
    categorical
        Number columns read as unordered categories (``astype("category")`` in every
        chunk; the encoder takes the sorted union of their values).
    sep
        The CSV delimiter (None: sniffed).
    chunk_rows
        Rows per chunk.

    After a full reading, ``n_rows``, ``n_unlabelled`` and ``empty`` (feature
    columns without a value) describe the file.
    """

    def __init__(
        self,
        path: str,
        target: str,
        drop: list[str],
        categorical: list[str],
        sep: str | None,
        chunk_rows: int,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError(f"--chunk-rows must be at least 1, got {chunk_rows}")
        self.path, self.target, self.chunk_rows = path, target, chunk_rows
        self.parquet = is_parquet(path)
        self.sep = None if self.parquet else _separator(path, sep)
        columns = self._header()
        missing = [c for c in [target, *drop, *categorical] if c not in columns]
        if missing:
            raise ValueError(
                f"--target/--drop/--categorical: {path} has no column(s) {missing}; "
                f"it has {columns}"
            )
        self.features = [c for c in columns if c != target and c not in drop]
        if not self.features:
            raise ValueError("no feature columns left after --target and --drop")
        self.categorical = list(categorical)
        # labels as written (007, true): a CSV's target is read as text, and each
        # distinct text gets the label the whole column would give it
        self.labels = None if self.parquet else self._csv_labels()
        distinct = self._parquet_labels() if self.labels is None else set(self.labels.values())
        if not distinct:
            raise ValueError(f"the target column {target!r} has no labels")
        if len(distinct) < 2:
            raise ValueError(f"the target {target!r} has one value only: nothing to predict")
        self.n_rows = self.n_unlabelled = 0
        self.empty: list[str] = []

    def _header(self) -> list[str]:
        if self.parquet:
            import pyarrow.parquet as pq

            return [str(c) for c in pq.ParquetFile(self.path).schema_arrow.names]
        try:
            header = pd.read_csv(
                self.path, sep=self.sep, header=None, nrows=1, dtype=str, keep_default_na=False
            )
        except pd.errors.EmptyDataError as err:
            raise ValueError(f"{self.path}: {err}") from None
        names = list(header.iloc[0])
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{self.path}: repeated column names {repeated}; make them unique")
        return names

    def _csv_reader(self, **kwargs) -> Iterator[pd.DataFrame]:
        try:
            yield from pd.read_csv(self.path, sep=self.sep, chunksize=self.chunk_rows, **kwargs)
        except pd.errors.ParserError as err:
            raise ValueError(f"{self.path} is not a readable CSV: {err}") from None
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{self.path} is not UTF-8 text ({err.reason}); save it as UTF-8"
            ) from None

    def _csv_labels(self) -> dict[str, object]:
        """Each distinct text of the target column and its label (the target column
        read once, alone)."""
        texts: dict[str, None] = {}
        for part in self._csv_reader(usecols=[self.target], dtype=str):
            texts.update(dict.fromkeys(part[self.target].dropna()))
        written = pd.Series(list(texts), dtype=object)
        if written.empty:
            return {}
        buffer = io.StringIO()
        csv.writer(buffer).writerows([t] for t in written)
        buffer.seek(0)
        # pandas types the distinct texts as it would the whole column
        typed = pd.read_csv(buffer, header=None, names=["y"], keep_default_na=False)["y"]
        labels = labels_as_written(typed, written)
        return dict(zip(written, labels, strict=True))

    def _parquet_labels(self) -> set:
        """The distinct labels of a Parquet file's target column (read alone)."""
        import pyarrow.parquet as pq

        column = pq.read_table(self.path, columns=[self.target]).column(0)
        return set(column.drop_null().unique().to_pylist())

    def _frames(self) -> Iterator[pd.DataFrame]:
        if self.parquet:
            import pyarrow.parquet as pq

            columns = [*self.features, self.target]
            for batch in pq.ParquetFile(self.path).iter_batches(self.chunk_rows, columns=columns):
                yield batch.to_pandas()
        else:
            yield from self._csv_reader(dtype={self.target: str})

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
        n_rows = n_unlabelled = 0
        seen = dict.fromkeys(self.features, False)
        for frame in self._frames():
            labelled = frame[self.target].notna().to_numpy()
            n_rows += len(frame)
            n_unlabelled += int((~labelled).sum())
            X = frame.loc[labelled, self.features]
            for name in self.categorical:
                X[name] = X[name].astype("category")
            for name in self.features:
                seen[name] = seen[name] or bool(X[name].notna().any())
            y = frame.loc[labelled, self.target]
            if self.labels is not None:
                y = y.map(self.labels)
            if len(X):
                yield X, y
        if n_rows == 0:
            raise ValueError(f"{self.path} has no rows")
        self.n_rows, self.n_unlabelled = n_rows, n_unlabelled
        self.empty = [name for name, any_value in seen.items() if not any_value]

    @property
    def n_labelled(self) -> int:
        return self.n_rows - self.n_unlabelled


__all__ = ["CHUNKED_BYTES", "CHUNK_ROWS", "TableChunks", "is_parquet", "read_in_chunks"]
