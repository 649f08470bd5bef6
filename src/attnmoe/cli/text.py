"""``attnmoe train-text`` and ``analogy``: training on a text file, linear word analogies."""

from __future__ import annotations

import argparse
import os

from .options import (
    add_block,
    add_checkpoint_options,
    add_d_model,
    add_ddp_options,
    add_device,
    add_nproc,
    add_num_threads,
    add_out,
    add_precision,
    add_quiet,
    add_seed,
)
from .outputs import check_output, say_replaced
from .train import warn_if_nothing_to_resume


def _cmd_train_text(args: argparse.Namespace) -> int:
    from ..text.train import train_text

    corpus = None if args.corpus == "demo" else args.corpus
    tokenizer = args.tokenizer[3:] if args.tokenizer.startswith("hf:") else None
    check_output(
        args.out, inputs=[corpus], model_dirs=[tokenizer, args.checkpoint_dir], folder=True
    )
    warn_if_nothing_to_resume(args)
    replaced = say_replaced(args.out)
    train_text(
        args.corpus,
        args.out,
        length=args.length,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        d_model=args.d_model,
        block=args.block,
        window=args.window,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        min_count=args.min_count,
        max_vocab=args.max_vocab,
        tokenizer=args.tokenizer,
        mode=args.mode,
        stride=args.stride,
        max_windows=args.max_windows,
        validation=args.validation,
        patience=args.patience if args.patience > 0 else None,
        also_cbow=args.also_cbow,
        seed=args.seed,
        num_threads=args.num_threads,
        device=args.device,
        nproc=args.nproc,
        precision=args.precision,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        bind_cores=args.bind_cores,
        poll_allreduce=args.poll_allreduce,
        verbose=0 if args.quiet else 1,
    )
    replaced()
    return 0


def _cmd_analogy(args: argparse.Namespace) -> int:
    from ..text.analogy import evaluate_analogies
    from ..text.embeddings import load_source

    check_output(args.out, inputs=[args.questions, *_source_paths(args.sources)], folder=True)
    sources = [load_source(s) for s in args.sources]
    result = evaluate_analogies(
        sources,
        args.questions,
        restrict_to_common=not args.each,
        normalize=not args.raw,
        max_vocab=args.max_vocab,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    print(result.to_markdown(), end="")
    paths = result.save(args.out)
    print(f"\nsaved: {', '.join(str(p) for p in paths)}")
    return 0


def _source_paths(specs: list[str]) -> list[str]:
    """The files and folders named by embedding source specs (``NAME=kind:PATH``)."""
    paths = []
    for spec in specs:
        spec = spec.split("=", 1)[-1]
        path = spec.split(":", 1)[-1]
        if os.path.exists(path):
            paths.append(path)
    return paths


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train-text`` and ``analogy``."""
    _register_train_text(sub)
    _register_analogy(sub)


def _register_train_text(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-text",
        help="train bidirectional attention (and CBOW) on a text file",
        description="Stream a text corpus, build a vocabulary, train BidirectionalAttention "
        "(and with --also-cbow a CBOW) by masked-word prediction with early stopping on a "
        "held-out share, and save the models + vocab.json in --out.",
    )
    p.add_argument(
        "corpus",
        metavar="CORPUS",
        help="text file (streamed; .gz/.bz2/.xz ok), or 'demo' for gensim's head500.noblanks.cor",
    )
    add_out(p, "output directory (written atomically)", required=True)
    p.add_argument("--length", type=int, default=16, help="window length L (default 16)")
    p.add_argument("--n-layers", type=int, default=1, help="attention layers (default 1)")
    p.add_argument("--n-heads", type=int, default=2, help="heads per layer (default 2)")
    add_d_model(p, "model width (default 64)")
    add_block(p)
    p.add_argument("--window", type=int, default=None, help="experts within this distance")
    p.add_argument("--epochs", type=int, default=10, help="maximum epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-count", type=int, default=5, help="vocabulary min count (5)")
    p.add_argument("--max-vocab", type=int, default=None, help="vocabulary size cap")
    p.add_argument(
        "--tokenizer",
        default="regex",
        help="regex (lower-cased words, default), regex-cased, whitespace, hf:DIR",
    )
    p.add_argument("--mode", choices=["windows", "sentences"], default="windows")
    p.add_argument("--stride", type=int, default=None, help="window stride (default L)")
    p.add_argument("--max-windows", type=int, default=None, help="read at most N examples")
    p.add_argument("--validation", type=float, default=0.1, help="held-out share (0.1)")
    p.add_argument("--patience", type=int, default=2, help="early-stopping patience (2)")
    p.add_argument("--also-cbow", action="store_true", help="also train a CBOW baseline")
    add_seed(p)
    add_num_threads(p, default=1, help="torch threads (default 1)")
    add_device(p, default=None, help="torch device, e.g. cuda (default cpu)")
    add_nproc(p, "data-parallel processes (DistributedDataParallel)")
    add_precision(p)
    add_checkpoint_options(
        p,
        dir_help="periodic atomic checkpoints here",
        every_help="steps between checkpoints",
        resume_help="continue from the last checkpoint",
    )
    add_ddp_options(
        p,
        bind_cores_help="pin each process to its own CPUs (Linux; with --nproc, one core per "
        "process)",
        poll_allreduce_help="with --nproc on CPU: wait for the gradient all-reduce by polling, "
        "not sleeping (default: on when the processes x --num-threads fit in the CPUs)",
    )
    add_quiet(p, "no progress output")
    p.set_defaults(func=_cmd_train_text)


def _register_analogy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analogy",
        help="linear word analogies (paper Tables 1-2) for embedding sources",
        description="Top-1 accuracy and mean cos(d, f) on Google's analogy questions, "
        "over the questions common to all sources.",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="embedding sources: glove-6b-50d, minilm-l6, hf:DIR, w2v:PATH, w2v-bin:PATH, "
        "glove:PATH, kv:PATH, word2vec-train[:CORPUS], NAME=SPEC (see attnmoe.text.embeddings)",
    )
    p.add_argument("--questions", help="questions file (default: gensim's questions-words.txt)")
    add_out(p, "output directory (default: %(default)s)", default="runs/analogy")
    p.add_argument(
        "--each",
        action="store_true",
        help="evaluate each source on its own coverage, not common questions",
    )
    p.add_argument("--raw", action="store_true", help="f = c - a + b from raw, not unit, vectors")
    p.add_argument("--max-vocab", type=int, help="use only each source's first N words")
    p.add_argument("--batch-size", type=int, help="questions per matrix product")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_analogy)
