"""A word vocabulary built from a token stream in one pass (min-count, max-size, ``<unk>``).

Ids are assigned in descending frequency, ties in order of first appearance,
after the special tokens (``<unk>`` is id 0). Frequency order matters
downstream: the analogy evaluation and gensim treat earlier rows as more
frequent. Saved as plain JSON (no pickle).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["UNK", "Vocabulary", "VocabularyFileError"]

UNK = "<unk>"
FORMAT = "attnmoe-vocab"
FORMAT_VERSION = 1


class VocabularyFileError(ValueError):
    """A vocabulary file is missing, corrupted or of an unknown format."""


class Vocabulary:
    """Words <-> ids, with an unknown-word id.

    Parameters
    ----------
    words : sequence of str
        The vocabulary in id order; must contain ``unk`` and be unique.
    counts : sequence of int, optional
        Corpus count of each word (0 for specials); zeros when None.
    unk : str
        The unknown-word token; words outside the vocabulary map to its id.
    meta : dict, optional
        Free-form JSON-serializable facts (tokenizer, min_count, corpus
        statistics) kept in the saved file.

    Examples
    --------
    >>> v = Vocabulary.build([["a", "b", "a"], ["c", "a"]], min_count=1)
    >>> v.words
    ['<unk>', 'a', 'b', 'c']
    >>> v.encode(["a", "zzz"]).tolist()
    [1, 0]
    """

    def __init__(
        self,
        words: Sequence[str],
        counts: Sequence[int] | None = None,
        unk: str = UNK,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.words = list(words)
        self.counts = [0] * len(self.words) if counts is None else [int(c) for c in counts]
        if len(self.counts) != len(self.words):
            raise ValueError(f"{len(self.words)} words but {len(self.counts)} counts")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary words must be unique")
        if unk not in self.index:
            raise ValueError(f"the unknown-word token {unk!r} is not in the vocabulary")
        self.unk = unk
        self.unk_id = self.index[unk]
        self.meta = dict(meta or {})

    # -- building -----------------------------------------------------------------
    @classmethod
    def build(
        cls,
        sentences: Iterable[Iterable[str]],
        min_count: int = 5,
        max_size: int | None = None,
        unk: str = UNK,
        prune_at: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Vocabulary:
        """Count tokens in one pass over ``sentences`` and keep the frequent ones.

        Parameters
        ----------
        sentences : iterable of iterables of str
            Consumed once (a generator is fine); only the counts are kept.
        min_count : int
            Drop words seen fewer times.
        max_size : int, optional
            Keep at most this many words, ``<unk>`` included (the most frequent).
        unk : str
            The unknown-word token (id 0).
        prune_at : int, optional
            Bound the counter's memory: whenever it holds more than ``prune_at``
            distinct words, drop the words seen fewer than ``min_count`` times so
            far (gensim's ``max_vocab_size`` rule; counts become approximate for
            words that come back later). None: exact counts.
        meta : dict, optional
            Stored with the vocabulary.

        Returns
        -------
        Vocabulary
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        counter: Counter[str] = Counter()
        n_tokens = 0
        threshold = min_count
        for sentence in sentences:
            tokens = list(sentence)
            counter.update(tokens)
            n_tokens += len(tokens)
            if prune_at is not None and len(counter) > prune_at:
                # Raise the bar each time, as gensim does, so pruning terminates.
                for word in [w for w, c in counter.items() if c < threshold]:
                    del counter[word]
                threshold += 1
        counter.pop(unk, None)  # a literal "<unk>" in the text is the unknown token
        # Counter.most_common keeps first-seen order among equal counts: deterministic.
        kept = [(w, c) for w, c in counter.most_common() if c >= min_count]
        if max_size is not None:
            kept = kept[: max_size - 1]
        unk_count = n_tokens - sum(c for _, c in kept)
        info = {
            "min_count": min_count,
            "max_size": max_size,
            "n_tokens": n_tokens,
            "n_distinct": len(counter),
            **(meta or {}),
        }
        return cls(
            [unk, *(w for w, _ in kept)], [unk_count, *(c for _, c in kept)], unk=unk, meta=info
        )

    # -- lookups ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"Vocabulary(n={len(self)}, unk={self.unk!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return (self.words, self.counts, self.unk) == (other.words, other.counts, other.unk)

    __hash__ = None  # mutable container semantics

    def id_of(self, word: str) -> int:
        """Id of ``word`` (the ``<unk>`` id if unknown)."""
        return self.index.get(word, self.unk_id)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids of ``tokens`` as an int64 array (unknown words -> ``unk_id``)."""
        get, unk = self.index.get, self.unk_id
        return np.fromiter((get(t, unk) for t in tokens), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of ``ids``."""
        return [self.words[int(i)] for i in ids]

    @property
    def unknown_rate(self) -> float:
        """Share of counted tokens that map to ``<unk>`` (0 if nothing was counted)."""
        total = sum(self.counts)
        return self.counts[self.unk_id] / total if total else 0.0

    # -- files ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "unk": self.unk,
            "words": self.words,
            "counts": self.counts,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise VocabularyFileError("not an attnmoe vocabulary (no 'format': 'attnmoe-vocab')")
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise VocabularyFileError(
                f"vocabulary format version {data['format_version']} is newer than this "
                f"attnmoe reads ({FORMAT_VERSION}); upgrade attnmoe"
            )
        try:
            return cls(data["words"], data.get("counts"), data["unk"], data.get("meta"))
        except (KeyError, TypeError, ValueError) as err:
            raise VocabularyFileError(f"invalid vocabulary: {err}") from err

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the vocabulary as JSON, atomically (temporary file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, ensure_ascii=False)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp files are private (0600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise VocabularyFileError(f"{path} is not valid JSON: {err}") from err
        return cls.from_dict(data)
