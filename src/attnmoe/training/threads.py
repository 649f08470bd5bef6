"""The one thread-count context manager of the package."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, restoring the count afterwards.

    Parameters
    ----------
    n
        Threads for the block, a positive integer; None leaves the setting as it is.

    Raises
    ------
    ValueError
        ``n`` is not a positive integer (torch's own error is a RuntimeError).
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
