"""Linear word analogies of models trained on text, next to GloVe, MiniLM and the paper.

Paper Tables 1-2 (section 4) for:

* GloVe 6B 50d and MiniLM-L6 input embeddings (pretrained, offline packages),
  also GloVe restricted to MiniLM's candidate vocabulary (a control for the
  vocabulary size);
* models trained here on the same corpus, over several seeds: attnmoe's
  BidirectionalAttention (token embeddings ``E``, the experts at the middle
  location ``alpha_8``, output embeddings ``rho``), our CBOW (``alpha``,
  ``rho``) and gensim's Word2Vec (CBOW, negative sampling), all on the same
  tokens (lower-cased regex words, min count 5);
* the paper's rows (BERT, BART, word2vec, GloVe) from
  ``attnmoe.bench.paper.load_paper_results()``.

Corpora: gensim's ``head500.noblanks.cor`` (the demo corpus: 250 stemmed
Wikipedia articles, 331k tokens) and, with ``--wiki``, the plain text of the
Wikipedia dump excerpt in gensim's test data
(``enwiki-latest-pages-articles1.xml-...-shortened.bz2``, 106 articles, 453k
tokens, not stemmed), extracted with gensim's ``WikiCorpus``.

Two phases, so that the attnmoe/CBOW training can run on a GPU machine that
lacks gensim::

    # everything here (CPU; slow: about 1 min per epoch per model on 1 thread)
    .venv/bin/python benchmarks/bench_text_analogy.py all --wiki
    # or: corpora here, training elsewhere (e.g. --device cuda), report here
    .venv/bin/python benchmarks/bench_text_analogy.py corpora --wiki
    python benchmarks/bench_text_analogy.py train --device cuda --wiki
    .venv/bin/python benchmarks/bench_text_analogy.py report --wiki

``train`` writes one ``.npz`` per corpus and seed (vectors stored as float16 to
keep them small; they are compared by cosine in float32) under ``--trained``;
``report`` writes ``benchmarks/results/text/trained_on_text.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from attnmoe.bench.paper import paper_analogy_tables
from attnmoe.text.corpus import TextCorpus, demo_corpus_path
from attnmoe.text.embeddings import Embeddings, model_embeddings
from attnmoe.text.train import train_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / "runs" / "textdata"
TRAINED = ROOT / "runs" / "text_analogy"
RESULT = HERE / "results" / "text" / "trained_on_text.md"
CORPORA = {"head500": "head500.noblanks.cor", "enwiki": "enwiki-head.txt"}
PARTS = {"attention": ["E", "experts", "rho"], "cbow": ["E", "rho"]}
MODEL = {"length": 16, "n_layers": 1, "n_heads": 2, "d_model": 64, "min_count": 5}


# --------------------------------------------------------------------------- corpora


def build_corpora(wiki: bool) -> dict[str, Path]:
    """Copy the demo corpus and (with ``wiki``) extract the Wikipedia excerpt to ``DATA``."""
    import shutil

    DATA.mkdir(parents=True, exist_ok=True)
    out = {"head500": DATA / CORPORA["head500"]}
    if not out["head500"].exists():
        shutil.copy(demo_corpus_path(), out["head500"])
    if wiki:
        path = DATA / CORPORA["enwiki"]
        if not path.exists():
            from gensim.corpora.wikicorpus import WikiCorpus
            from gensim.test.utils import datapath

            dump = datapath("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
            # dictionary={} skips gensim's own vocabulary pass; one process is plenty here.
            corpus = WikiCorpus(dump, dictionary={}, processes=1)
            with open(path, "w", encoding="utf-8") as fh:
                for tokens in corpus.get_texts():
                    fh.write(" ".join(tokens) + "\n")
        out["enwiki"] = path
    return out


def corpus_paths(wiki: bool) -> dict[str, Path]:
    names = ["head500", "enwiki"] if wiki else ["head500"]
    paths = {n: DATA / CORPORA[n] for n in names}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise SystemExit(f"missing corpora {missing}: run the 'corpora' phase first")
    return paths


# --------------------------------------------------------------------------- training


def train_phase(args: argparse.Namespace) -> None:
    """Train attnmoe and CBOW per corpus and seed; save their vectors as npz."""
    out = Path(args.trained)
    out.mkdir(parents=True, exist_ok=True)
    for name, path in corpus_paths(args.wiki).items():
        corpus = TextCorpus(path)
        vocab = corpus.build_vocab(min_count=MODEL["min_count"])
        for seed in args.seeds:
            t0 = time.perf_counter()
            data = corpus.encode(
                vocab, MODEL["length"], validation=0.1, seed=seed, max_examples=args.max_windows
            )
            res = train_text(
                path,
                None,
                length=MODEL["length"],
                n_layers=MODEL["n_layers"],
                n_heads=MODEL["n_heads"],
                d_model=MODEL["d_model"],
                epochs=args.epochs,
                patience=2,
                also_cbow=True,
                seed=seed,
                device=args.device,
                verbose=0,
                vocab=vocab,
                data=data,
            )
            arrays: dict[str, np.ndarray] = {}
            words = None
            for kind, model in (("attention", res.attention), ("cbow", res.cbow)):
                for part in PARTS[kind]:
                    emb = model_embeddings(model, vocab, part)
                    words = emb.words if words is None else words
                    arrays[f"{kind}/{part}"] = emb.vectors.astype(np.float16)
            log = {k: v for k, v in res.stats.items() if k != "corpus"}
            log["device"] = args.device or "cpu"
            np.savez(
                out / f"{name}-seed{seed}.npz",
                words=np.array(words),
                log=np.array(json.dumps(log)),
                **arrays,
            )
            losses = {k: round(v["held_out_loss"], 4) for k, v in log["models"].items()}
            print(f"{name} seed {seed}: {losses} ({time.perf_counter() - t0:.0f} s)", flush=True)


# --------------------------------------------------------------------------- report


class _Sentences:
    """Re-iterable token lists of a corpus (gensim iterates several times)."""

    def __init__(self, path: Path) -> None:
        self.corpus = TextCorpus(path, mode="sentences")

    def __iter__(self):
        return self.corpus.token_stream()


def word2vec(path: Path, seed: int) -> Embeddings:
    """gensim Word2Vec (CBOW, negative sampling) on the same tokens and width as attnmoe."""
    from gensim.models import Word2Vec

    from attnmoe.text.embeddings import from_gensim, stable_hash

    model = Word2Vec(
        _Sentences(path),
        vector_size=MODEL["d_model"],
        window=MODEL["length"] // 2,
        min_count=MODEL["min_count"],
        epochs=20,
        seed=seed + 1,
        workers=1,
        hashfxn=stable_hash,
    )
    return from_gensim(model, "word2vec")


def mean_sd(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Cell-wise ``mean ± sd`` (sd over seeds, ddof=1) of equally shaped tables."""
    stack = np.stack([t.to_numpy(dtype=float) for t in tables])
    mean, sd = stack.mean(0), stack.std(0, ddof=1) if len(tables) > 1 else np.zeros(stack[0].shape)
    cells = [
        [f"{m:.3f} ± {s:.3f}" for m, s in zip(mr, sr, strict=True)]
        for mr, sr in zip(mean, sd, strict=True)
    ]
    return pd.DataFrame(cells, index=tables[0].index, columns=tables[0].columns)


def md(df: pd.DataFrame) -> str:
    from attnmoe.text.analogy import format_markdown

    return format_markdown(df)


def trained_section(name: str, path: Path, args: argparse.Namespace, glove, questions) -> list[str]:
    from attnmoe.text.analogy import evaluate_analogies

    files = sorted(Path(args.trained).glob(f"{name}-seed*.npz"))
    if not files:
        raise SystemExit(f"no trained vectors for {name} in {args.trained}: run 'train' first")
    acc, cos, logs, n_q, cover = [], [], [], None, None
    for f in files:
        z = np.load(f)
        seed = int(re.search(r"seed(\d+)", f.name).group(1))
        words = [str(w) for w in z["words"]]
        sources = [word2vec(path, seed)]
        for key, label in (
            ("attention/E", "attnmoe-E"),
            ("attention/experts", "attnmoe-experts8"),
            ("attention/rho", "attnmoe-rho"),
            ("cbow/E", "cbow-alpha"),
            ("cbow/rho", "cbow-rho"),
        ):
            sources.append(Embeddings(words, z[key].astype(np.float32), label))
        # Same candidates for every trained source: the words all of them know.
        common = set.intersection(*(set(s.words) for s in sources))
        sources = [s.restrict(common) for s in sources]
        res = evaluate_analogies([*sources, glove], questions, progress=False)
        acc.append(res.accuracy_table())
        cos.append(res.cosine_table())
        logs.append(json.loads(str(z["log"])))
        n_q, cover = len(res.questions), res.coverage
        n_cand = len(common)
    seeds = len(files)
    device = logs[0].get("device", "?")
    max_epochs = logs[0]["settings"]["epochs"]
    seed_list = ", ".join(str(lg["settings"]["seed"]) for lg in logs)

    def loss(kind: str) -> str:
        vals = np.array([lg["models"][kind]["held_out_loss"] for lg in logs])
        eps = np.array([lg["models"][kind]["epochs_run"] for lg in logs])
        sd = vals.std(ddof=1) if seeds > 1 else 0.0
        return f"{vals.mean():.3f} ± {sd:.3f} ({eps.min()}-{eps.max()} epochs)"

    d = logs[0]["data"]
    lines = [
        f"### Trained on `{path.name}` ({seeds} seeds)",
        "",
        f"Tokens: lower-cased regex words; vocabulary min count {MODEL['min_count']} "
        f"({n_cand} candidate words common to all trained sources, `<unk>` excluded). "
        f"Examples: {d['train_examples']} windows of {MODEL['length']} tokens for training, "
        f"{d['validation_examples']} held out ({d['train_unknown_share']:.1%} `<unk>`). "
        f"attnmoe: 1 layer, 2 heads, d = {MODEL['d_model']}, pure block, one-pass masking; "
        f"CBOW: d = {MODEL['d_model']}, mean of the other 15 words of the window; both Adam "
        f"lr 2e-3, batch 64, up to {max_epochs} epochs with patience 2 on the held-out loss "
        f"(trained on: {device}). Held-out masked-word loss: attnmoe {loss('attention')}, "
        f"CBOW {loss('cbow')}. Word2Vec: gensim CBOW with negative sampling, d = "
        f"{MODEL['d_model']}, window 8, 20 epochs, same tokens. GloVe 6B 50d is shown on the "
        "same questions as a reference (its candidates: its own 400k words).",
        "",
        f"Questions: {n_q} common to all sources (coverage: "
        + ", ".join(f"{k} {v}" for k, v in cover.items() if k == "word2vec")
        + f" of 19544); mean ± sd over seeds {seed_list}.",
        "",
        "Table 1: top-1 accuracy",
        "",
        md(mean_sd(acc)),
        "",
        "Table 2: mean cos(d, f)",
        "",
        md(mean_sd(cos)),
        "",
    ]
    return lines


def report_phase(args: argparse.Namespace) -> None:
    import gensim

    from attnmoe.text.analogy import evaluate_analogies, load_questions
    from attnmoe.text.embeddings import glove_6b_50d, minilm_l6

    t0 = time.perf_counter()
    questions = load_questions()
    glove = glove_6b_50d()
    minilm = minilm_l6()
    glove_mini = glove.restrict(minilm.words, name="glove-in-minilm-vocab")
    pre = evaluate_analogies([glove, minilm, glove_mini], questions, progress=False)
    paper = paper_analogy_tables()
    sections = []
    for name, path in corpus_paths(args.wiki).items():
        sections += trained_section(name, path, args, glove, questions)

    cmd = " ".join(["python", *map(shlex.quote, sys.argv)])
    parts = [
        "## Linear word analogies of models trained on text (paper Tables 1-2)",
        "",
        f"Command: `{cmd}` ({time.perf_counter() - t0:.0f} s for the report; training command "
        "and device in each section). Report machine: "
        f"{platform.machine()}, {torch.get_num_threads()} torch threads; Python "
        f"{platform.python_version()}, torch {torch.__version__}, gensim {gensim.__version__}.",
        "",
        *([f"Training: {args.train_note}", ""] if args.train_note else []),
        "Protocol (docs/analogy_protocol.md): questions lower-cased; f = b + c - a from unit "
        "vectors; every candidate word except a, b, c ranked by cosine; top-1 accuracy and mean "
        "cos(d, f) over the questions whose four words all sources know.",
        "",
        "### Pretrained: GloVe 6B 50d and MiniLM-L6 input embeddings",
        "",
        "`glove-in-minilm-vocab`: GloVe with its candidates restricted to the words MiniLM also "
        f"has ({len(glove_mini)} words), to separate the embedding from the vocabulary size.",
        "",
        pre.to_markdown(),
        "### The paper's rows (9522 common questions; BERT/BART input embeddings)",
        "",
        "Table 1 (paper): top-1 accuracy",
        "",
        md(paper[0]),
        "",
        "Table 2 (paper): mean cos(d, f)",
        "",
        md(paper[1]),
        "",
        *sections,
    ]
    text = "\n".join(parts)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["corpora", "train", "report", "all"])
    parser.add_argument("--wiki", action="store_true", help="also the Wikipedia excerpt corpus")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (patience 2)")
    parser.add_argument("--device", default=None, help="torch device for training")
    parser.add_argument("--max-windows", type=int, default=None, help="smoke runs: fewer windows")
    parser.add_argument("--trained", default=str(TRAINED), help="folder of the trained vectors")
    parser.add_argument("--out", default=str(RESULT))
    parser.add_argument(
        "--train-note", default=None, help="report: how and where the 'train' phase was run"
    )
    args = parser.parse_args()
    if args.phase in ("corpora", "all"):
        build_corpora(args.wiki)
    if args.phase in ("train", "all"):
        torch.set_num_threads(1)
        train_phase(args)
    if args.phase in ("report", "all"):
        report_phase(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
