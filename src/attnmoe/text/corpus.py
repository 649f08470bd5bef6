"""Streaming text corpora: tokenizers, sentences or fixed-length windows, batches.

Everything here reads a text file of any size in bounded memory: the file is
consumed as a generator of pieces (``iter_text``: fixed-size byte chunks cut at
whitespace; ``iter_lines``: one line at a time) and never read whole. What is
held at once is one chunk (or one line) plus one batch of token ids.

* Tokenizers: :class:`RegexTokenizer` (lower-cased words, the default) or
  :class:`HuggingFaceTokenizer` (any tokenizer saved in a local directory).
* Examples for masked-word training, each ``length`` token ids long:

  - ``"windows"`` (default): the file as one token stream cut into consecutive
    windows (``stride`` apart; line breaks are ignored, like word2vec's
    streaming). Read in byte chunks, so even a file without newlines streams.
  - ``"sentences"``: one example per non-blank line; a line longer than
    ``length`` continues in the next example; short ones are padded (the
    returned ``key_mask`` is False at padding). Holds one line at a time.

``.gz``, ``.bz2`` and ``.xz`` files are decompressed on the fly.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from attnmoe.text.vocab import Vocabulary

__all__ = [
    "DEFAULT_PATTERN",
    "EncodedCorpus",
    "HuggingFaceTokenizer",
    "RegexTokenizer",
    "TextCorpus",
    "Tokenizer",
    "demo_corpus_path",
    "iter_lines",
    "iter_sentence_examples",
    "iter_text",
    "iter_windows",
    "load_tokenizer",
]

#: Words: runs of letters/digits, with inner hyphens or apostrophes kept
#: ("merriam-webst", "don't"); punctuation is dropped.
DEFAULT_PATTERN = r"\w+(?:[-'’]\w+)*"

Mode = Literal["windows", "sentences"]


class Tokenizer(Protocol):
    """Anything that turns a piece of text into a list of token strings."""

    def __call__(self, text: str) -> list[str]: ...

    def spec(self) -> str:
        """A string that :func:`load_tokenizer` turns back into this tokenizer."""
        ...


class RegexTokenizer:
    """Words matched by a regular expression, lower-cased by default.

    Parameters
    ----------
    pattern : str
        Regular expression of one token (``re.findall`` semantics, no groups
        that capture). Default :data:`DEFAULT_PATTERN`.
    lowercase : bool
        Lower-case the text first.

    Examples
    --------
    >>> RegexTokenizer()("The cat's hat, re-used!")
    ['the', "cat's", 'hat', 're-used']
    """

    def __init__(self, pattern: str = DEFAULT_PATTERN, lowercase: bool = True) -> None:
        self.pattern = pattern
        self.lowercase = lowercase
        self._regex = re.compile(pattern)

    def __call__(self, text: str) -> list[str]:
        return self._regex.findall(text.lower() if self.lowercase else text)

    def spec(self) -> str:
        if self.pattern == DEFAULT_PATTERN:
            return "regex" if self.lowercase else "regex-cased"
        return ("regex:" if self.lowercase else "regex-cased:") + self.pattern

    def __repr__(self) -> str:
        return f"RegexTokenizer({self.pattern!r}, lowercase={self.lowercase})"


class WhitespaceTokenizer:
    """Tokens separated by whitespace, as they are (gensim's ``LineSentence`` rule)."""

    def __call__(self, text: str) -> list[str]:
        return text.split()

    def spec(self) -> str:
        return "whitespace"

    def __repr__(self) -> str:
        return "WhitespaceTokenizer()"


class HuggingFaceTokenizer:
    """A Hugging Face tokenizer from a local directory (never the network).

    Token strings come from ``tokenizer.tokenize`` (e.g. WordPiece pieces with
    ``##``); the vocabulary of the trained model is still built from corpus
    counts of those strings, so it is a subset of the tokenizer's.

    Parameters
    ----------
    path : path-like
        Directory written by ``save_pretrained`` (``tokenizer.json`` or
        ``vocab.txt`` + ``tokenizer_config.json``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoTokenizer

        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no tokenizer directory at {self.path}")
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)

    def __call__(self, text: str) -> list[str]:
        return self._tokenizer.tokenize(text)

    def spec(self) -> str:
        return f"hf:{self.path}"

    def __repr__(self) -> str:
        return f"HuggingFaceTokenizer({str(self.path)!r})"


def load_tokenizer(spec: str | Tokenizer | None = None) -> Tokenizer:
    """A tokenizer from a specification string.

    Parameters
    ----------
    spec : str or Tokenizer, optional
        ``"regex"`` (default: lower-cased words), ``"regex-cased"``,
        ``"regex:PATTERN"``, ``"regex-cased:PATTERN"``, ``"whitespace"``,
        ``"hf:DIR"`` or a local Hugging Face tokenizer directory. A tokenizer
        object is returned as is.

    Returns
    -------
    Tokenizer
    """
    if spec is None:
        return RegexTokenizer()
    if not isinstance(spec, str):
        return spec
    kind, sep, arg = spec.partition(":")
    if kind in ("regex", "regex-cased"):
        return RegexTokenizer(arg if sep else DEFAULT_PATTERN, lowercase=kind == "regex")
    if spec == "whitespace":
        return WhitespaceTokenizer()
    if kind == "hf":
        return HuggingFaceTokenizer(arg)
    if Path(spec).is_dir():
        return HuggingFaceTokenizer(spec)
    raise ValueError(
        f"unknown tokenizer {spec!r}; use regex, regex-cased, regex:PATTERN, whitespace, "
        "hf:DIR or a Hugging Face tokenizer directory"
    )


def demo_corpus_path() -> Path:
    """gensim's test corpus ``head500.noblanks.cor`` (250 stemmed Wikipedia articles)."""
    from gensim.test.utils import datapath

    return Path(datapath("head500.noblanks.cor"))


# --------------------------------------------------------------------------- reading


def _open_binary(path: Path) -> IO[bytes]:
    opener: Callable[..., Any] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(
        path.suffix, open
    )
    return opener(path, "rb")


def iter_text(
    path: str | os.PathLike[str],
    chunk_bytes: int = 1 << 20,
    on_bytes: Callable[[int], Any] | None = None,
) -> Iterator[str]:
    """Yield the file's text in pieces of about ``chunk_bytes``, cut at whitespace.

    No token is split between pieces unless a run without whitespace is longer
    than ``16 * chunk_bytes`` (then it is cut, to keep memory bounded).

    Parameters
    ----------
    path : path-like
        UTF-8 text (invalid bytes become U+FFFD); ``.gz``/``.bz2``/``.xz``
        decompressed on the fly.
    chunk_bytes : int
        Bytes read per step.
    on_bytes : callable, optional
        Called with the number of (compressed) bytes read at each step, for
        progress bars.
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry = ""
    with _open_binary(path) as fh:
        raw_fh = getattr(fh, "fileobj", None) or getattr(fh, "_fp", None)
        last_pos = 0
        while True:
            raw = fh.read(chunk_bytes)
            if on_bytes is not None:
                # Report compressed progress where the underlying file is visible.
                pos = raw_fh.tell() if raw_fh is not None and hasattr(raw_fh, "tell") else None
                if pos is None:
                    on_bytes(len(raw))
                else:
                    on_bytes(pos - last_pos)
                    last_pos = pos
            text = carry + decoder.decode(raw, final=not raw)
            if not raw:
                if text:
                    yield text
                return
            cut = len(text) - 1
            while cut >= 0 and not text[cut].isspace():
                cut -= 1
            if cut < 0 and len(text) < 16 * chunk_bytes:
                carry = text  # no whitespace yet: wait for the token to end
                continue
            cut = len(text) - 1 if cut < 0 else cut
            yield text[: cut + 1]
            carry = text[cut + 1 :]


def iter_lines(
    path: str | os.PathLike[str], on_bytes: Callable[[int], Any] | None = None
) -> Iterator[str]:
    """Yield the non-blank lines of a file, one at a time (without the newline)."""
    with _open_binary(Path(path)) as fh:
        for raw in fh:
            if on_bytes is not None:
                on_bytes(len(raw))
            line = raw.decode("utf-8", errors="replace").strip()
            if line:
                yield line


def iter_windows(
    id_chunks: Iterable[np.ndarray], length: int, stride: int | None = None
) -> Iterator[np.ndarray]:
    """Cut a stream of id arrays into windows of ``length`` ids, ``stride`` apart.

    Parameters
    ----------
    id_chunks : iterable of 1-d int arrays
        Consecutive pieces of one token stream.
    length : int
        Window length ``L``.
    stride : int, optional
        Distance between window starts; default ``length`` (no overlap). A
        trailing part shorter than ``length`` is dropped.

    Yields
    ------
    numpy.ndarray
        ``(length,)`` int64.
    """
    stride = length if stride is None else stride
    if length < 1 or stride < 1:
        raise ValueError("length and stride must be positive")
    buffer = np.empty(0, dtype=np.int64)
    skip = 0  # ids still to pass before the next window (stride > length crosses chunks)
    for ids in id_chunks:
        ids = np.asarray(ids, dtype=np.int64)
        passed = min(skip, len(ids))
        skip -= passed
        buffer = np.concatenate([buffer, ids[passed:]])
        start = 0
        while start + length <= len(buffer):
            yield buffer[start : start + length].copy()
            start += stride
        skip += max(0, start - len(buffer))
        buffer = buffer[start:]  # keeps < length ids between chunks


def iter_sentence_examples(
    sentences: Iterable[np.ndarray], length: int, pad_id: int = 0
) -> Iterator[tuple[np.ndarray, int]]:
    """One example per sentence, padded to ``length``; long sentences continue in more.

    Yields
    ------
    ids : numpy.ndarray
        ``(length,)`` int64, padded with ``pad_id``.
    n : int
        Number of real tokens (the rest is padding).
    """
    for ids in sentences:
        for start in range(0, len(ids), length):
            piece = ids[start : start + length]
            out = np.full(length, pad_id, dtype=np.int64)
            out[: len(piece)] = piece
            yield out, len(piece)


# --------------------------------------------------------------------------- corpus


@dataclass
class EncodedCorpus:
    """Examples of a corpus as token-id tensors, split into training and held-out parts.

    ``*_keys`` are ``(N, L)`` bool (False at padding) in ``"sentences"`` mode,
    None in ``"windows"`` mode (no padding).
    """

    train: Tensor
    validation: Tensor
    train_keys: Tensor | None = None
    validation_keys: Tensor | None = None
    truncated: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    train_path: Path | None = None  # set when the training windows were streamed to a .npy


@dataclass
class TextCorpus:
    """A text file read as a stream of tokens, sentences or windows.

    Parameters
    ----------
    path : path-like
        The corpus file.
    tokenizer : Tokenizer or str, optional
        See :func:`load_tokenizer`; default lower-cased regex words.
    mode : {"windows", "sentences"}
        How examples are cut (module docstring).
    chunk_bytes : int
        Bytes read per step in ``"windows"`` mode (bounds memory).

    Examples
    --------
    >>> corpus = TextCorpus(demo_corpus_path())                    # doctest: +SKIP
    >>> vocab = corpus.build_vocab(min_count=5)                    # doctest: +SKIP
    >>> for x, keys in corpus.batches(vocab, length=16, batch_size=32):  # doctest: +SKIP
    ...     ...                                                    # x: (32, 16) int64
    """

    path: str | os.PathLike[str]
    tokenizer: Tokenizer | str | None = None
    mode: Mode = "windows"
    chunk_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no corpus file at {self.path}")
        self.tokenizer = load_tokenizer(self.tokenizer)
        if self.mode not in ("windows", "sentences"):
            raise ValueError(f"mode must be 'windows' or 'sentences', got {self.mode!r}")

    # -- streams ------------------------------------------------------------------
    def _progress(self, desc: str, show: bool) -> tqdm:
        return tqdm(
            total=os.path.getsize(self.path),
            desc=desc,
            unit="B",
            unit_scale=True,
            disable=not show,
            leave=False,
        )

    def token_stream(self, progress: bool = False, desc: str = "reading") -> Iterator[list[str]]:
        """Token lists: one per byte chunk (``"windows"``) or per line (``"sentences"``)."""
        tok = self.tokenizer
        assert callable(tok)
        with self._progress(desc, progress) as bar:
            if self.mode == "windows":
                for text in iter_text(self.path, self.chunk_bytes, bar.update):
                    yield tok(text)
            else:
                for line in iter_lines(self.path, bar.update):
                    tokens = tok(line)
                    if tokens:
                        yield tokens

    def build_vocab(
        self,
        min_count: int = 5,
        max_size: int | None = None,
        prune_at: int | None = None,
        progress: bool = False,
    ) -> Vocabulary:
        """Count the corpus in one streamed pass; see :meth:`Vocabulary.build`."""
        assert self.tokenizer is not None
        meta = {"tokenizer": self.tokenizer.spec(), "corpus": str(self.path)}  # type: ignore[union-attr]
        return Vocabulary.build(
            self.token_stream(progress, "counting words"),
            min_count=min_count,
            max_size=max_size,
            prune_at=prune_at,
            meta=meta,
        )

    def examples(
        self,
        vocab: Vocabulary,
        length: int,
        stride: int | None = None,
        progress: bool = False,
    ) -> Iterator[tuple[np.ndarray, int]]:
        """Yield ``(ids, n_real)`` examples of ``length`` ids, streamed from the file."""
        ids = (vocab.encode(t) for t in self.token_stream(progress, "encoding"))
        if self.mode == "windows":
            for window in iter_windows(ids, length, stride):
                yield window, length
        else:
            yield from iter_sentence_examples(ids, length, pad_id=vocab.unk_id)

    def batches(
        self,
        vocab: Vocabulary,
        length: int,
        batch_size: int = 64,
        stride: int | None = None,
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Yield ``(x, key_mask)`` batches: ``(B, L)`` int64 ids and ``(B, L)`` bool or None.

        Streamed: only one batch is held at a time. ``key_mask`` is None in
        ``"windows"`` mode (no padding).
        """
        rows: list[np.ndarray] = []
        lens: list[int] = []
        for ids, n in self.examples(vocab, length, stride):
            rows.append(ids)
            lens.append(n)
            if len(rows) == batch_size:
                yield self._stack(rows, lens, length)
                rows, lens = [], []
        if rows:
            yield self._stack(rows, lens, length)

    def _stack(
        self, rows: list[np.ndarray], lens: list[int], length: int
    ) -> tuple[Tensor, Tensor | None]:
        x = torch.from_numpy(np.stack(rows))
        if self.mode == "windows":
            return x, None
        keys = torch.arange(length).unsqueeze(0) < torch.tensor(lens).unsqueeze(1)
        return x, keys

    def encode(
        self,
        vocab: Vocabulary,
        length: int,
        *,
        stride: int | None = None,
        max_examples: int | None = None,
        validation: float = 0.1,
        seed: int = 0,
        progress: bool = False,
        train_path: str | os.PathLike[str] | None = None,
    ) -> EncodedCorpus:
        """Read up to ``max_examples`` examples into memory, holding out a share.

        The file is streamed; memory is ``max_examples * length`` ids (int32
        while reading). Each example goes to the held-out part with probability
        ``validation`` (seeded), so held-out examples come from the whole
        corpus and not from one end of it.

        Parameters
        ----------
        vocab : Vocabulary
        length : int
            Example length ``L``.
        stride : int, optional
            ``"windows"`` mode: distance between window starts (default ``L``).
            Overlapping windows leak text into the held-out part.
        max_examples : int, optional
            Stop reading after this many examples (both parts together).
        validation : float
            Share held out, in ``[0, 1)``.
        seed : int
            Seeds the split.
        progress : bool
            Show a progress bar over the file's bytes.
        train_path : path-like, optional
            ``"windows"`` mode: stream the training windows to this ``.npy`` file
            (int32, ``(N, L)``; written beside it and renamed into place) instead of
            memory, for :meth:`ArraySource.from_npy <attnmoe.training.distributed.ArraySource>`;
            memory stays bounded by one chunk. ``train`` is then empty.

        Returns
        -------
        EncodedCorpus
        """
        if not 0.0 <= validation < 1.0:
            raise ValueError(f"validation must be in [0, 1), got {validation}")
        if train_path is not None and self.mode != "windows":
            raise ValueError("train_path needs mode='windows' (windows have no padding)")
        rng = np.random.default_rng(seed)
        parts: dict[bool, tuple[list[np.ndarray], list[int]]] = {False: ([], []), True: ([], [])}
        writer = None if train_path is None else _NpyRowWriter(Path(train_path), length)
        streamed_tokens = streamed_unknown = 0
        count, truncated = 0, False
        try:
            for ids, n in self.examples(vocab, length, stride, progress):
                if max_examples is not None and count >= max_examples:
                    truncated = True
                    break
                held = bool(rng.random() < validation)
                count += 1
                if writer is not None and not held:
                    writer.append(ids)
                    streamed_tokens += length
                    streamed_unknown += int((ids == vocab.unk_id).sum())
                    continue
                parts[held][0].append(ids.astype(np.int32))
                parts[held][1].append(n)
            if writer is not None:
                writer.close()
        finally:
            if writer is not None:
                writer.abort()  # no-op once closed
        if writer is not None:
            if writer.rows == 0:
                Path(train_path).unlink(missing_ok=True)
                raise ValueError(f"{self.path} gave no training windows of length {length}")
            val = (
                torch.from_numpy(np.stack(parts[True][0])).long()
                if parts[True][0]
                else (torch.empty(0, length, dtype=torch.long))
            )
            stats = {
                "examples": count,
                "train_examples": writer.rows,
                "validation_examples": len(val),
                "train_tokens": streamed_tokens,
                "train_unknown_share": streamed_unknown / max(streamed_tokens, 1),
                "train_file": str(train_path),
            }
            empty = torch.empty(0, length, dtype=torch.long)
            return EncodedCorpus(empty, val, None, None, truncated, stats, Path(train_path))
        if not parts[False][0]:
            raise ValueError(
                f"{self.path} gave no training examples of length {length}; is it empty, "
                "or shorter than one window?"
            )

        def stack(held: bool) -> tuple[Tensor, Tensor | None]:
            rows, lens = parts[held]
            if not rows:
                empty = torch.empty(0, length, dtype=torch.long)
                return empty, (None if self.mode == "windows" else empty.bool())
            x = torch.from_numpy(np.stack(rows)).long()
            if self.mode == "windows":
                return x, None
            keys = torch.arange(length).unsqueeze(0) < torch.tensor(lens).unsqueeze(1)
            return x, keys

        (train, train_keys), (val, val_keys) = stack(False), stack(True)
        n_tokens = int(train.numel() if train_keys is None else train_keys.sum())
        unknown = int(
            ((train == vocab.unk_id) & (True if train_keys is None else train_keys)).sum()
        )
        stats = {
            "examples": count,
            "train_examples": len(train),
            "validation_examples": len(val),
            "train_tokens": n_tokens,
            "train_unknown_share": unknown / max(n_tokens, 1),
        }
        return EncodedCorpus(train, val, train_keys, val_keys, truncated, stats)


class _NpyRowWriter:
    """Append int32 rows to a ``.npy`` file without holding them: raw rows go to a
    side file; :meth:`close` writes the header and the rows, then renames into place."""

    def __init__(self, path: Path, length: int, chunk_rows: int = 65536) -> None:
        self.path, self.length, self.rows = path, length, 0
        self._raw_path = path.with_name(path.name + ".rows.partial")
        self._raw = open(self._raw_path, "wb")
        self._chunk: list[np.ndarray] = []
        self._chunk_rows = chunk_rows

    def append(self, ids: np.ndarray) -> None:
        self._chunk.append(ids.astype("<i4", copy=False))
        if len(self._chunk) >= self._chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if self._chunk:
            self._raw.write(np.stack(self._chunk).tobytes())
            self.rows += len(self._chunk)
            self._chunk = []

    def close(self) -> None:
        self._flush()
        self._raw.close()
        partial = self.path.with_name(self.path.name + ".partial")
        with open(partial, "wb") as out, open(self._raw_path, "rb") as raw:
            header = {"descr": "<i4", "fortran_order": False, "shape": (self.rows, self.length)}
            np.lib.format.write_array_header_1_0(out, header)
            while block := raw.read(1 << 24):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.path)
        self._raw_path.unlink()

    def abort(self) -> None:
        if not self._raw.closed:
            self._raw.close()
        self._raw_path.unlink(missing_ok=True)
