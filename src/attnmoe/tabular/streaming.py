"""Tables given in chunks of rows: what the estimators' ``fit_chunks`` builds on.

A table larger than is comfortable in memory as a DataFrame is read twice, chunk
by chunk: the first pass learns the column encoder
(:meth:`~attnmoe.tabular.encoding.TableEncoder.fit_chunks`) and the labels, the
second writes every row's codes into one compact array (:class:`CodeTable`):
int16 ids where the vocabulary allows (int32 beyond), float64 only when a numeric
value falls between two knots. Training then reads that array; a DataFrame of the
whole table never exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch


def chunk_passes(chunks) -> Callable[[], Iterator]:
    """``chunks`` as a function that starts a fresh pass over them at each call.

    ``chunks`` is a re-iterable (a list, or any object whose ``iter()`` starts
    again from the first chunk, such as a reader of a file) or a function that
    returns a fresh iterator. A one-shot iterator (a generator) is refused: the
    chunks are read twice.
    """
    if callable(chunks) and not hasattr(chunks, "__iter__"):
        return lambda: iter(chunks())
    try:
        first = iter(chunks)
    except TypeError:
        raise TypeError(
            f"chunks must be an iterable of chunks, got {type(chunks).__name__}"
        ) from None
    if first is chunks:
        raise TypeError(
            "chunks is an iterator, which can be read once; fit_chunks reads the chunks "
            "twice (the encoder, then the codes): pass a list, a re-iterable reader, or a "
            "function that returns a fresh iterator"
        )
    return lambda: iter(chunks)


class CodeTable:
    """Every row's codes in one array, filled chunk by chunk.

    The array starts as the narrowest integer type that holds ``mask_id`` (int16,
    else int32) and becomes float64 at the first chunk with a fractional code
    (float64, not float32, so that the codes, and the model trained on them, are
    those of the table encoded at once).
    """

    def __init__(self, n_rows: int, n_columns: int, mask_id: int) -> None:
        dtype = np.int16 if mask_id <= np.iinfo(np.int16).max else np.int32
        self.array = np.empty((n_rows, n_columns), dtype=dtype)
        self.filled = 0

    def append(self, codes: np.ndarray) -> None:
        """Write the next rows' codes ``(n, n_columns)``."""
        stop = self.filled + len(codes)
        if stop > len(self.array):
            raise ValueError(
                f"the chunks hold more rows on their second reading than the {len(self.array)} "
                "of the first: they must give the same rows each time"
            )
        if codes.dtype.kind == "f" and self.array.dtype.kind != "f":
            self.array = self.array.astype(np.float64)
        self.array[self.filled : stop] = codes
        self.filled = stop

    def result(self) -> np.ndarray:
        """The filled array; ``ValueError`` if the chunks gave fewer rows than expected."""
        if self.filled != len(self.array):
            raise ValueError(
                f"the chunks hold {self.filled} rows on their second reading and "
                f"{len(self.array)} on the first: they must give the same rows each time"
            )
        return self.array


class TargetMaskedRows:
    """The first ``n_rows`` rows of ``tokens`` with the last location masked, read in
    slices: the training rows as :func:`attnmoe.explain.usage.gate_baseline` reads them
    (int64 or float64, as :meth:`~attnmoe.tabular.AttentionMoEClassifier.tokens`
    gives them), without a copy of the whole table."""

    def __init__(self, tokens: np.ndarray, n_rows: int, mask_id: int) -> None:
        self.tokens, self.n_rows, self.mask_id = tokens, n_rows, mask_id
        self.shape = (n_rows, tokens.shape[1])

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, rows: slice) -> torch.Tensor:
        start, stop, step = rows.indices(self.n_rows)
        part = self.tokens[start:stop:step]
        part = part.astype(np.float64 if part.dtype.kind == "f" else np.int64)
        part[:, -1] = self.mask_id
        return torch.from_numpy(part)


def count_chunks(chunks: Iterable) -> int | None:
    """How many chunks ``chunks`` holds, when it says (a list does), else None."""
    try:
        return len(chunks)  # type: ignore[arg-type]
    except TypeError:
        return None


__all__ = ["CodeTable", "TargetMaskedRows", "chunk_passes", "count_chunks"]
