"""Linear word analogies, the paper's protocol (section 4, Tables 1-2), vectorized.

For a question ``a : b :: c : d`` the prediction is the vocabulary word, other
than ``a``, ``b`` and ``c``, with the highest cosine to ``f = c - a + b``
(3CosAdd). We report top-1 accuracy and the mean ``cos(d, f)`` by semantic /
syntactic / all questions, over the questions whose four words are in every
compared vocabulary. See ``docs/analogy_protocol.md`` for the choices and how
they differ from gensim's ``KeyedVectors.evaluate_word_analogies``.

Two entry points:

* :func:`evaluate_analogies` -- the paper's protocol, several sources at once,
  common questions, Tables 1 and 2 (:class:`AnalogyResult`).
* :func:`evaluate_word_analogies_gensim` -- a drop-in, bit-for-bit compatible
  replacement of gensim's evaluator (same vocabulary restriction, case
  handling, OOV handling, top-5 scan and return value), on the same batched
  path; used for the cross-check and the speed benchmark.

Both score all questions with chunked matrix products ``F @ U.T`` (``U``: unit
vocabulary vectors), so the vocabulary matrix is read once per chunk of
questions instead of once per question.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from attnmoe.text.embeddings import Embeddings

__all__ = [
    "AnalogyResult",
    "evaluate_analogies",
    "evaluate_word_analogies_gensim",
    "format_markdown",
    "load_questions",
]

logger = logging.getLogger(__name__)

# Scores of one chunk are a (chunk, vocabulary) float32 matrix; cap it at
# 2**25 elements (128 MiB) so memory stays bounded for any vocabulary size.
_CHUNK_ELEMENTS = 2**25


def _default_questions_path() -> str:
    from gensim.test.utils import datapath

    return datapath("questions-words.txt")


def load_questions(
    path: str | os.PathLike[str] | None = None, lowercase: bool = True
) -> pd.DataFrame:
    """Read Google's analogy questions (``questions-words.txt`` format).

    Parameters
    ----------
    path : path-like, optional
        Lines ``a b c d`` grouped under ``: category`` headers. Default:
        the copy in gensim's test data (19544 questions, 14 categories).
    lowercase : bool
        Lower-case the words (the paper's protocol).

    Returns
    -------
    pandas.DataFrame
        Columns ``a, b, c, d, category, semantic``; ``semantic`` is True for
        categories not starting with ``gram`` (5 semantic, 9 syntactic).
    """
    path = _default_questions_path() if path is None else os.fspath(path)
    rows = []
    category = None
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if line.startswith(": "):
                category = line[2:].strip()
                continue
            parts = line.split()
            if not parts:
                continue
            if category is None:
                raise ValueError(f"{path}:{line_no}: question before the first ': category' line")
            if len(parts) != 4:
                logger.info("skipping invalid line %d of %s", line_no, path)
                continue
            if lowercase:
                parts = [p.lower() for p in parts]
            rows.append((*parts, category))
    df = pd.DataFrame(rows, columns=["a", "b", "c", "d", "category"])
    df["semantic"] = ~df["category"].str.startswith("gram")
    return df


# --------------------------------------------------------------------------- kernel


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    # Same formula as gensim's get_normed_vectors (vectors / norms, float32), so
    # the scores below round like gensim's; zero rows stay zero instead of NaN.
    norms = np.linalg.norm(vectors, axis=1)
    return vectors / np.where(norms > 0, norms, 1.0)[:, None].astype(vectors.dtype)


def _offset_queries(
    unit: np.ndarray, ia: np.ndarray, ib: np.ndarray, ic: np.ndarray, base: np.ndarray | None = None
) -> np.ndarray:
    """Unit-normalized ``f = b + c - a`` for every question (float64 sum, float32 result)."""
    base = unit if base is None else base
    f = base[ib].astype(np.float64) + base[ic] - base[ia]
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return (f / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _top_k(
    unit: np.ndarray,
    queries: np.ndarray,
    exclude: np.ndarray,
    k: int,
    batch_size: int | None = None,
    progress: bool = True,
    desc: str = "analogies",
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of each query, ``exclude`` rows masked out.

    Parameters
    ----------
    unit : numpy.ndarray
        ``(n, d)`` unit vocabulary vectors (the candidates).
    queries : numpy.ndarray
        ``(q, d)`` unit query vectors.
    exclude : numpy.ndarray
        ``(q, m)`` candidate indices to skip per query (a, b, c).
    k : int
        Number of neighbours.
    batch_size : int, optional
        Questions per matrix product; default keeps a chunk of scores at
        ``_CHUNK_ELEMENTS`` floats.
    progress : bool
        Show a tqdm bar.
    desc : str
        Bar label.

    Returns
    -------
    values, indices : numpy.ndarray
        ``(q, k)`` scores in decreasing order and their vocabulary rows;
        slots beyond the available candidates hold ``-inf``.
    """
    n, q = unit.shape[0], queries.shape[0]
    k = max(1, min(k, n))
    bs = batch_size or max(1, min(q, _CHUNK_ELEMENTS // max(n, 1)))
    vocab = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))
    qt = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    ex = torch.from_numpy(np.ascontiguousarray(exclude, dtype=np.int64))
    values = torch.empty(q, k)
    indices = torch.empty(q, k, dtype=torch.int64)
    # One reusable score buffer: re-allocating (and page-faulting) hundreds of
    # MiB per chunk costs about as much as the matrix product itself.
    buf = torch.empty(min(bs, q), n)
    with torch.inference_mode(), tqdm(total=q, desc=desc, unit="q", disable=not progress) as bar:
        for s in range(0, q, bs):
            e = min(q, s + bs)
            out = buf[: e - s]
            torch.mm(qt[s:e], vocab.T, out=out)
            out.scatter_(1, ex[s:e], -math.inf)
            v, i = torch.topk(out, k, dim=1, sorted=True)
            values[s:e] = v
            indices[s:e] = i
            bar.update(e - s)
    return values.numpy(), indices.numpy()


# --------------------------------------------------------------------------- paper protocol


def _row_labels(questions: pd.DataFrame, with_counts: bool) -> dict[str, np.ndarray]:
    sem = questions["semantic"].to_numpy(bool)
    groups = {"semantic": sem, "syntactic": ~sem, "all": np.ones_like(sem)}
    if not with_counts:
        return groups
    return {f"{g} ({int(m.sum())})": m for g, m in groups.items()}


@dataclass
class AnalogyResult:
    """Per-question outcomes of :func:`evaluate_analogies` and the paper's tables.

    Attributes
    ----------
    questions : pandas.DataFrame
        The evaluated questions (``a, b, c, d, category, semantic``); with
        ``common=True`` the same questions for every source.
    sources : list of str
        Source names, the table columns.
    correct, cosine : dict of str to numpy.ndarray
        Per source and question: top-1 hit, and ``cos(d, f)``. NaN where a
        source does not cover a question (only with ``common=False``).
    predicted : dict of str to list of str
        Per source and question, the top-1 word ('' where not covered).
    coverage : dict of str to int
        Questions each source covers on its own.
    n_questions : int
        Questions read from the file.
    common : bool
        Whether the evaluation was restricted to the common questions.
    settings : dict
        The protocol options used.
    """

    questions: pd.DataFrame
    sources: list[str]
    correct: dict[str, np.ndarray]
    cosine: dict[str, np.ndarray]
    predicted: dict[str, list[str]]
    coverage: dict[str, int]
    n_questions: int
    common: bool = True
    settings: dict[str, Any] = field(default_factory=dict)

    def _table(self, values: dict[str, np.ndarray]) -> pd.DataFrame:
        groups = _row_labels(self.questions, with_counts=self.common)
        data = {
            name: [
                float(np.nanmean(values[name][m]))
                if (~np.isnan(values[name][m])).any()
                else math.nan
                for m in groups.values()
            ]
            for name in self.sources
        }
        return pd.DataFrame(data, index=list(groups))

    def accuracy_table(self) -> pd.DataFrame:
        """Table 1: top-1 accuracy; rows semantic / syntactic / all, columns sources."""
        return self._table(
            {k: v.astype(float) if v.dtype == bool else v for k, v in self.correct.items()}
        )

    def cosine_table(self) -> pd.DataFrame:
        """Table 2: mean ``cos(d, f)``; rows semantic / syntactic / all, columns sources."""
        return self._table(self.cosine)

    def counts_table(self) -> pd.DataFrame:
        """Questions evaluated per group and source."""
        groups = _row_labels(self.questions, with_counts=False)
        return pd.DataFrame(
            {
                n: [int((~np.isnan(self.cosine[n][m])).sum()) for m in groups.values()]
                for n in self.sources
            },
            index=list(groups),
        )

    def per_question(self) -> pd.DataFrame:
        """One row per question, with ``predicted/correct/cosine`` columns per source."""
        df = self.questions.reset_index(drop=True).copy()
        for name in self.sources:
            df[f"{name}:predicted"] = self.predicted[name]
            df[f"{name}:correct"] = self.correct[name]
            df[f"{name}:cosine"] = self.cosine[name]
        return df

    def to_markdown(self, digits: int = 3) -> str:
        """Both tables and a coverage line, as markdown."""
        cov = ", ".join(f"{n}: {c}" for n, c in self.coverage.items())
        scope = "common to all sources" if self.common else "covered by each source"
        lines = [
            f"Questions: {self.n_questions} read; coverage per source: {cov}; "
            f"evaluated on the questions {scope}.",
            "",
            "Table 1: top-1 accuracy (3CosAdd)",
            "",
            format_markdown(self.accuracy_table(), digits),
            "",
            "Table 2: mean cos(d, f)",
            "",
            format_markdown(self.cosine_table(), digits),
        ]
        if not self.common:
            lines += ["", "Questions evaluated", "", format_markdown(self.counts_table(), 0)]
        return "\n".join(lines) + "\n"

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write the tables (CSV and ``tables.md``) and ``per_question.csv``.

        All four are made in memory, written in full to a staging folder inside
        ``directory`` (``.analogy-*``) and then renamed over the old ones, so a
        failure or a crash while writing leaves the previous results as they were.
        Other files in ``directory`` are left alone.

        Parameters
        ----------
        directory : path-like
            Created if missing.

        Returns
        -------
        list of pathlib.Path
            The files written.
        """
        files = {
            "table1_accuracy.csv": self.accuracy_table().to_csv(index_label="questions"),
            "table2_cosine.csv": self.cosine_table().to_csv(index_label="questions"),
            "tables.md": self.to_markdown(),
            "per_question.csv": self.per_question().to_csv(index=False),
        }
        return _replace_files(Path(directory), files)


def _replace_files(directory: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` (name -> UTF-8 text) into ``directory``: each staged whole in a
    hidden folder there (same file system: the renames are atomic), then renamed."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".analogy-", dir=directory))
    try:
        for name, text in files.items():
            with open(staging / name, "wb") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        for name in files:
            os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [directory / name for name in files]


def format_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """Render a DataFrame as a GitHub markdown table (no ``tabulate`` needed).

    Parameters
    ----------
    df : pandas.DataFrame
        Index becomes the first column.
    digits : int
        Decimals for floats.

    Returns
    -------
    str
    """

    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    header = [str(df.index.name or "")] + [str(c) for c in df.columns]
    rows = [
        [str(i)] + [cell(v) for v in row]
        for i, row in zip(df.index, df.itertuples(index=False), strict=True)
    ]
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]

    def line(r: list[str]) -> str:
        first = r[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    sep = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def evaluate_analogies(
    sources: Embeddings | Sequence[Embeddings],
    questions: pd.DataFrame | str | os.PathLike[str] | None = None,
    restrict_to_common: bool = True,
    normalize: bool = True,
    lowercase: bool = True,
    max_vocab: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> AnalogyResult:
    """Evaluate embedding sources on the analogy questions, the paper's protocol.

    For each question ``a : b :: c : d``: ``f = b + c - a`` from unit-normalized
    vectors (``normalize=True``), every vocabulary word except ``a, b, c``
    ranked by cosine with ``f``; top-1 accuracy and ``cos(d, f)``.

    Parameters
    ----------
    sources : Embeddings or sequence of Embeddings
        Names must be unique (they are the table columns).
    questions : DataFrame or path-like, optional
        From :func:`load_questions`, or a path for it; default gensim's file.
    restrict_to_common : bool
        Evaluate only questions whose four words are in every source's
        vocabulary (the paper). Otherwise each source on its own coverage.
    normalize : bool
        Build ``f`` from unit vectors (standard 3CosAdd, as word2vec's
        ``compute-accuracy`` and gensim do). ``False`` uses the raw vectors,
        the literal reading of ``f = c - a + b``; candidates are ranked by
        cosine either way.
    lowercase : bool
        Lower-case each vocabulary first, keeping the first (most frequent)
        row of words that merge (:meth:`Embeddings.lowercased`); questions
        are lower-cased too. Needed for cased sources such as word2vec's
        GoogleNews vectors; a no-op for GloVe and uncased BERT.
    max_vocab : int, optional
        Candidates (and question words) limited to each source's first
        ``max_vocab`` words, like gensim's ``restrict_vocab``. Default: the
        whole vocabulary, as the paper ranks "every vocabulary word".
    batch_size : int, optional
        Questions per matrix product (default: bounded chunk memory).
    progress : bool
        Show progress bars.

    Returns
    -------
    AnalogyResult
    """
    sources = [sources] if isinstance(sources, Embeddings) else list(sources)
    if not sources:
        raise ValueError("no embedding sources")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")
    if not isinstance(questions, pd.DataFrame):
        questions = load_questions(questions, lowercase=lowercase)
    elif lowercase:
        questions = questions.assign(**{c: questions[c].str.lower() for c in "abcd"})
    n_questions = len(questions)

    prepared = []
    masks = []
    for src in sources:
        emb = src.lowercased() if lowercase else src
        if max_vocab is not None:
            emb = emb.restrict(int(max_vocab))
        index = emb.index
        rows = {c: questions[c].map(index) for c in "abcd"}
        mask = np.logical_and.reduce([r.notna().to_numpy() for r in rows.values()])
        prepared.append((emb, rows))
        masks.append(mask)
    common = np.logical_and.reduce(masks)
    keep = common if restrict_to_common else np.logical_or.reduce(masks)
    evaluated = questions[keep].reset_index(drop=True)

    correct: dict[str, np.ndarray] = {}
    cosine: dict[str, np.ndarray] = {}
    predicted: dict[str, list[str]] = {}
    for (emb, rows), mask, name in zip(prepared, masks, names, strict=True):
        sel = mask[keep]  # this source's questions among the evaluated ones
        ia, ib, ic, id_ = (rows[c].to_numpy()[keep][sel].astype(np.int64) for c in "abcd")
        unit = _unit_rows(emb.vectors)
        f = _offset_queries(unit, ia, ib, ic, base=None if normalize else emb.vectors)
        _, top = _top_k(
            unit,
            f,
            np.stack([ia, ib, ic], axis=1),
            k=1,
            batch_size=batch_size,
            progress=progress,
            desc=name,
        )
        hit = np.full(len(evaluated), math.nan)
        hit[sel] = top[:, 0] == id_
        cos = np.full(len(evaluated), math.nan)
        # Row-wise dot of unit(d) with unit(f): cos(d, f), in float64.
        cos[sel] = np.einsum("ij,ij->i", unit[id_].astype(np.float64), f.astype(np.float64))
        words = [""] * len(evaluated)
        for j, w in zip(np.flatnonzero(sel), top[:, 0], strict=True):
            words[j] = emb.words[w]
        correct[name] = hit.astype(bool) if restrict_to_common else hit
        cosine[name] = cos
        predicted[name] = words

    return AnalogyResult(
        questions=evaluated,
        sources=names,
        correct=correct,
        cosine=cosine,
        predicted=predicted,
        coverage={n: int(m.sum()) for n, m in zip(names, masks, strict=True)},
        n_questions=n_questions,
        common=restrict_to_common,
        settings={"normalize": normalize, "lowercase": lowercase, "max_vocab": max_vocab},
    )


# --------------------------------------------------------------------------- gensim-compatible


def _read_gensim_sections(
    path: str, case_insensitive: bool
) -> list[tuple[str, list[tuple[str, ...]]]]:
    """Parse the questions file exactly as gensim's evaluator does."""
    from gensim import utils

    sections: list[tuple[str, list[tuple[str, ...]]]] = []
    with utils.open(path, "rb") as fin:
        for line_no, raw in enumerate(fin):
            line = utils.to_unicode(raw)
            if line.startswith(": "):
                sections.append((line.lstrip(": ").strip(), []))
                continue
            if not sections:
                raise ValueError(f"Missing section header before line #{line_no} in {path}")
            words = line.split()
            if len(words) != 4:
                continue  # gensim skips (and does not count) invalid lines
            sections[-1][1].append(
                tuple(w.upper() for w in words) if case_insensitive else tuple(words)
            )
    return sections


def evaluate_word_analogies_gensim(
    vectors: Embeddings | Any,
    analogies: str | os.PathLike[str] | None = None,
    restrict_vocab: int = 300000,
    case_insensitive: bool = True,
    dummy4unknown: bool = False,
    batch_size: int | None = None,
    progress: bool = False,
    tol: float | None = None,
    stats: dict[str, Any] | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    """gensim's ``KeyedVectors.evaluate_word_analogies``, batched; same results.

    Reproduces gensim 4's rules: only the first ``restrict_vocab`` words are
    used, both as question vocabulary and as candidates; with
    ``case_insensitive`` words are compared upper-cased and a word maps to its
    first (most frequent) case variant; questions with a word outside that
    vocabulary are skipped (or counted wrong with ``dummy4unknown``); the
    prediction is the first of the top 5 neighbours of the unit 3CosAdd
    vector (``a, b, c`` rows excluded) whose upper-cased form is not one of
    ``a, b, c``.

    Scores come from chunked float32 matrix products, which round slightly
    differently from gensim's per-question products. Where the top-ranked
    scores that decide a question are closer than ``tol`` the question is
    re-scored with gensim's own ``most_similar``, so rankings, and hence
    accuracies, are identical to gensim's.

    Parameters
    ----------
    vectors : Embeddings or gensim.models.KeyedVectors
        Frequency-ordered vocabulary; words must be unique.
    analogies : path-like, optional
        Questions file; default gensim's ``questions-words.txt``.
    restrict_vocab, case_insensitive, dummy4unknown
        As in gensim.
    batch_size : int, optional
        Questions per matrix product.
    progress : bool
        Show a progress bar.
    tol : float, optional
        Score gap below which a question is re-scored exactly; default
        ``8 * d * 2**-24`` (generous against float32 rounding).
    stats : dict, optional
        Filled with ``n_evaluated``, ``n_rescored``, ``n_oov``.

    Returns
    -------
    score : float
        Overall accuracy (``correct / (correct + incorrect)``, 0.0 if none).
    sections : list of dict
        Per section ``{"section", "correct", "incorrect"}`` with lists of
        ``(a, b, c, expected)`` tuples, then ``"Total accuracy"`` -- gensim's
        return value.
    """
    from gensim.models import KeyedVectors

    kv = vectors if isinstance(vectors, KeyedVectors) else vectors.to_keyed_vectors()
    path = _default_questions_path() if analogies is None else os.fspath(analogies)
    words = list(kv.index_to_key[:restrict_vocab])
    n = len(words)
    # First occurrence wins, as in gensim's `{k.upper(): i for k in reversed(ok_keys)}`.
    ok_vocab: dict[str, int] = {}
    for i, w in enumerate(words):
        ok_vocab.setdefault(w.upper() if case_insensitive else w, i)
    keys = [w.upper() for w in words] if case_insensitive else words

    sections = _read_gensim_sections(path, case_insensitive)
    quads = [(si, q) for si, (_, qs) in enumerate(sections) for q in qs]
    in_vocab = np.array([all(w in ok_vocab for w in q) for _, q in quads], dtype=bool)
    ev = [quads[j] for j in np.flatnonzero(in_vocab)]
    idx = np.array([[ok_vocab[w] for w in q[:3]] for _, q in ev], dtype=np.int64).reshape(-1, 3)

    d = kv.vector_size
    tol = 8 * d * 2.0**-24 if tol is None else tol
    unit = _unit_rows(np.asarray(kv.vectors[:n], dtype=np.float32))
    k = 6  # gensim scans the top 5; the 6th score tells whether the 5th is safe
    if len(ev):
        f = _offset_queries(unit, idx[:, 0], idx[:, 1], idx[:, 2])
        vals, top = _top_k(unit, f, idx, k, batch_size, progress, desc="gensim-compatible")
    else:
        vals = np.empty((0, k), np.float32)
        top = np.empty((0, k), np.int64)

    def decide(cands: Sequence[int], ignore: set[str]) -> tuple[str | None, int]:
        predicted, pos = None, -1
        for c in cands:
            pos += 1
            predicted = keys[c]
            if predicted not in ignore:  # `predicted in ok_vocab` always holds here
                break
        return predicted, pos

    outcome = np.zeros(len(ev), dtype=bool)
    n_rescored = 0
    for j, (_, q) in enumerate(ev):
        valid = vals[j] > -math.inf
        cands = top[j][valid][:5]
        ignore = set(q[:3])
        predicted, pos = decide(cands, ignore)
        gaps = np.diff(-vals[j][valid][: pos + 2])
        if gaps.size and gaps.min() < tol:
            # A near tie decides this question: use gensim's own arithmetic.
            sims = kv.most_similar(
                positive=[int(idx[j, 1]), int(idx[j, 2])],
                negative=[int(idx[j, 0])],
                topn=5,
                restrict_vocab=restrict_vocab,
            )
            # most_similar returns (word, score); map words back to their row.
            cands = [kv.key_to_index[w] for w, _ in sims]
            predicted, _ = decide(cands, ignore)
            n_rescored += 1
        outcome[j] = predicted == q[3]

    out_sections = [{"section": name, "correct": [], "incorrect": []} for name, _ in sections]
    ev_pos = np.full(len(quads), -1)
    ev_pos[np.flatnonzero(in_vocab)] = np.arange(len(ev))
    for (si, q), p in zip(quads, ev_pos, strict=True):
        if p < 0:
            if dummy4unknown:
                out_sections[si]["incorrect"].append(q)
            continue
        out_sections[si]["correct" if outcome[p] else "incorrect"].append(q)

    total = {
        "section": "Total accuracy",
        "correct": [q for s in out_sections for q in s["correct"]],
        "incorrect": [q for s in out_sections for q in s["incorrect"]],
    }
    n_done = len(total["correct"]) + len(total["incorrect"])
    score = len(total["correct"]) / n_done if n_done else 0.0
    out_sections.append(total)
    if stats is not None:
        stats.update(n_evaluated=len(ev), n_rescored=n_rescored, n_oov=int((~in_vocab).sum()))
    return score, out_sections
