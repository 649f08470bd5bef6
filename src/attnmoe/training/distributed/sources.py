"""Token sources: random-access lists of fixed-length token windows."""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from .seeds import SYNTHETIC, derive_seed

#: the first bytes of every .npy file
_NPY_MAGIC = b"\x93NUMPY"


@runtime_checkable
class TokenSource(Protocol):
    """A random-access sequence of fixed-length token windows.

    The whole interface is ``window`` (tokens per window), ``len(source)``
    (number of windows) and ``windows(start, stop)``. Implementations must be
    picklable cheaply (they are sent to spawned processes): hold a path, not
    the data, for large corpora, and open files lazily.
    """

    window: int

    def __len__(self) -> int: ...

    def windows(self, start: int, stop: int) -> Tensor:
        """Windows ``start .. stop - 1`` as ``(stop - start, window)`` int64 token ids (CPU)."""
        ...


class ArraySource:
    """Windows cut from an in-memory or memory-mapped array of token ids.

    Parameters
    ----------
    tokens
        ``(N, L)`` token ids (each row a window) or a 1-D token stream, cut into
        non-overlapping windows of ``window`` tokens (a trailing remainder is
        dropped). A tensor, a NumPy array or a NumPy memmap.
    window
        Tokens per window; required for a 1-D stream, must equal ``L`` for 2-D.

    Notes
    -----
    For a corpus larger than memory use :meth:`from_npy`: the file is
    memory-mapped in each process and only the requested windows are read.
    """

    def __init__(self, tokens: Tensor | np.ndarray, window: int | None = None) -> None:
        self._path: str | None = None
        self._array: Tensor | np.ndarray | None = tokens
        self._setup(tokens.shape, window)

    @classmethod
    def from_npy(cls, path: str | os.PathLike, window: int | None = None) -> ArraySource:
        """A source over a ``.npy`` file of integer token ids, memory-mapped (no pickle).

        Raises
        ------
        ValueError
            One line, if the file is not a ``.npy`` of integers (a text file, say).
        """
        with open(path, "rb") as fh:
            is_npy = fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC
        if not is_npy:
            raise ValueError(
                f"{path} is not a .npy file: the tokens must be a .npy of integer token ids, "
                "e.g. numpy.save('tokens.npy', numpy.asarray(ids, dtype=numpy.int32))"
            )
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:  # object arrays (pickled) or a damaged header
            raise ValueError(
                f"{path} is not a .npy of integer token ids ({err}); save the ids with "
                "numpy.save('tokens.npy', numpy.asarray(ids, dtype=numpy.int32))"
            ) from None
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{path} holds {array.dtype}, not integer token ids")
        source = cls(array, window)
        source._path = os.fspath(path)
        return source

    def _setup(self, shape: tuple[int, ...], window: int | None) -> None:
        if len(shape) == 2:
            if window is not None and window != shape[1]:
                raise ValueError(f"window={window} but the rows hold {shape[1]} tokens")
            self.window, self._n = int(shape[1]), int(shape[0])
        elif len(shape) == 1:
            if window is None or window < 1:
                raise ValueError(
                    "a 1-D token stream needs a positive window length (window=, or --window)"
                )
            self.window, self._n = int(window), int(shape[0]) // int(window)
        else:
            raise ValueError(f"tokens must be 1-D or 2-D, got shape {tuple(shape)}")
        self._flat = len(shape) == 1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._path is not None:  # reopen the memmap in the receiving process
            state["_array"] = None
        return state

    def __len__(self) -> int:
        return self._n

    def _data(self) -> Tensor | np.ndarray:
        if self._array is None:
            self._array = np.load(self._path, mmap_mode="r", allow_pickle=False)
        return self._array

    def id_range(self, chunk: int = 1 << 22) -> tuple[int, int]:
        """The smallest and largest token id of the windows, read ``chunk`` ids at a time.

        A memory-mapped file is streamed (memory bounded by one chunk), so a bad id
        is found before training rather than when its batch comes up. Tokens past
        the last whole window are not trained on and not counted.
        """
        data = self._data()
        flat = data.reshape(-1) if self._flat else data
        rows = self._n * self.window if self._flat else self._n
        step = chunk if self._flat else max(1, chunk // self.window)
        low, high = None, None
        for first in range(0, rows, step):
            part = flat[first : min(first + step, rows)]
            part_low, part_high = int(part.min()), int(part.max())
            low = part_low if low is None else min(low, part_low)
            high = part_high if high is None else max(high, part_high)
        if low is None:
            raise ValueError("the token source has no whole window")
        return low, high

    def windows(self, start: int, stop: int) -> Tensor:
        if not 0 <= start <= stop <= self._n:
            raise IndexError(f"windows {start}..{stop} outside 0..{self._n}")
        data = self._data()
        if self._flat:
            chunk = data[start * self.window : stop * self.window]
        else:
            chunk = data[start:stop]
        if isinstance(chunk, np.ndarray):
            chunk = torch.from_numpy(np.array(chunk, dtype=np.int64))  # copies out of the map
        return chunk.reshape(stop - start, self.window).long()


class SyntheticSource:
    """A corpus of any size that never exists in memory: windows made from their index.

    Each window is a noisy arithmetic progression modulo ``vocab_size``
    (``x_j = a + j*c mod V``, a share ``noise`` of tokens replaced by random
    words), so masked words are predictable from their neighbours and the MLM
    loss falls. Windows are generated in chunks of ``chunk`` from a generator
    seeded by ``(seed, chunk index)``: any window range is reproducible in any
    process, at a memory cost of one chunk.

    Parameters
    ----------
    n_tokens
        Corpus size in tokens (``n_tokens // window`` windows).
    window
        Tokens per window.
    vocab_size
        Token ids are ``0 .. vocab_size - 1``.
    seed
        Corpus seed.
    noise
        Share of tokens replaced by uniform random words.
    chunk
        Windows generated together.
    """

    def __init__(
        self,
        n_tokens: int,
        window: int,
        vocab_size: int,
        seed: int = 0,
        noise: float = 0.1,
        chunk: int = 256,
    ) -> None:
        if window < 1 or vocab_size < 2 or n_tokens < window:
            raise ValueError("need window >= 1, vocab_size >= 2 and n_tokens >= window")
        self.window, self.vocab_size, self.seed = int(window), int(vocab_size), int(seed)
        self.noise, self.chunk = float(noise), int(chunk)
        self._n = int(n_tokens) // self.window
        self._cache: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return self._n

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None}

    def _chunk(self, index: int) -> Tensor:
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        gen = torch.Generator().manual_seed(derive_seed(self.seed, SYNTHETIC, index))
        n = min(self.chunk, self._n - index * self.chunk)
        v = self.vocab_size
        start = torch.randint(v, (n, 1), generator=gen)
        stride = torch.randint(1, min(v, 8), (n, 1), generator=gen)
        tokens = (start + stride * torch.arange(self.window)) % v
        noisy = torch.rand(n, self.window, generator=gen) < self.noise
        tokens = torch.where(noisy, torch.randint(v, (n, self.window), generator=gen), tokens)
        self._cache = (index, tokens)
        return tokens

    def windows(self, start: int, stop: int) -> Tensor:
        if not 0 <= start <= stop <= self._n:
            raise IndexError(f"windows {start}..{stop} outside 0..{self._n}")
        parts = []
        for index in range(
            start // self.chunk, (stop - 1) // self.chunk + 1 if stop > start else 0
        ):
            lo = max(start, index * self.chunk) - index * self.chunk
            hi = min(stop, (index + 1) * self.chunk) - index * self.chunk
            parts.append(self._chunk(index)[lo:hi])
        if not parts:
            return torch.empty(0, self.window, dtype=torch.long)
        return torch.cat(parts).long()
