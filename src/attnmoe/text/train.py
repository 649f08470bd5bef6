"""Train bidirectional attention (and CBOW) on a text file: ``attnmoe train-text``.

Two streamed passes over the corpus (count words, then encode examples), then
masked-word training with early stopping on a held-out share of the examples
(:func:`attnmoe.training.train_mlm`: one-layer models mask every
location once per epoch in one L x L pass; deeper ones use BERT's random
masking). The output directory is written atomically::

    DIR/vocab.json          the vocabulary (id order = model token ids)
    DIR/attention/          BidirectionalAttention (config.json + model.safetensors)
    DIR/cbow/               CBOW on the same examples (with also_cbow)
    DIR/training.json       settings, corpus statistics, loss curves, timings

``DIR`` is an embedding source for ``attnmoe analogy`` (``attnmoe:DIR``,
``attnmoe:DIR@experts:3``, ``attnmoe:DIR/cbow``; see
:func:`attnmoe.text.embeddings.from_attnmoe`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from attnmoe.model import CBOW, AttentionConfig, BidirectionalAttention
from attnmoe.model.io import atomic_directory, check_replaceable
from attnmoe.text.corpus import EncodedCorpus, Mode, TextCorpus, demo_corpus_path
from attnmoe.text.vocab import Vocabulary
from attnmoe.training import TrainingHistory, evaluate_mlm, torch_threads, train_mlm
from attnmoe.training.distributed import ArraySource, train_mlm_distributed

__all__ = ["TextTrainingResult", "resolve_corpus", "train_text"]

VOCAB_NAME = "vocab.json"
ATTENTION_DIR = "attention"
CBOW_DIR = "cbow"
LOG_NAME = "training.json"


@dataclass
class TextTrainingResult:
    """What :func:`train_text` produced (also saved in ``out``)."""

    out: Path | None
    vocab: Vocabulary
    attention: BidirectionalAttention
    cbow: CBOW | None
    histories: dict[str, TrainingHistory]
    stats: dict[str, Any] = field(default_factory=dict)


def resolve_corpus(corpus: str | os.PathLike[str]) -> Path:
    """The corpus path; ``"demo"`` (when no such file exists) is gensim's head500 corpus."""
    path = Path(corpus)
    if str(corpus) == "demo" and not path.exists():
        return demo_corpus_path()
    if not path.is_file():
        raise FileNotFoundError(f"no corpus file at {path}")
    return path


def _history_dict(h: TrainingHistory) -> dict[str, Any]:
    return asdict(h)


def train_text(
    corpus: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    length: int = 16,
    n_layers: int = 1,
    n_heads: int = 2,
    d_model: int = 64,
    block: str = "pure",
    window: int | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    min_count: int = 5,
    max_vocab: int | None = None,
    tokenizer: str | None = None,
    mode: Mode = "windows",
    stride: int | None = None,
    max_windows: int | None = None,
    validation: float = 0.1,
    patience: int | None = 2,
    also_cbow: bool = False,
    seed: int = 0,
    num_threads: int | None = 1,
    device: str | None = None,
    nproc: int = 1,
    precision: str = "fp32",
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    bind_cores: bool = False,
    poll_allreduce: bool | None = None,
    verbose: int = 1,
    vocab: Vocabulary | None = None,
    data: EncodedCorpus | None = None,
) -> TextTrainingResult:
    """Train :class:`BidirectionalAttention` (and optionally CBOW) on a text corpus.

    Parameters
    ----------
    corpus : path-like
        Text file (streamed; see :mod:`attnmoe.text.corpus`), or ``"demo"``.
    out : path-like, optional
        Output directory (module docstring), written atomically; None: not saved.
    length : int
        Example (window) length ``L``: the model's ``max_len``.
    n_layers, n_heads, d_model, block, window
        Model sizes and form (:class:`AttentionConfig`).
    epochs, batch_size, lr
        Adam budget per model (the same for CBOW).
    min_count, max_vocab, tokenizer
        Vocabulary: words seen at least ``min_count`` times, at most
        ``max_vocab`` entries (``<unk>`` included); tokenizer spec
        (:func:`attnmoe.text.corpus.load_tokenizer`).
    mode, stride
        ``"windows"`` (fixed-length windows ``stride`` apart) or
        ``"sentences"`` (one line per example, padded).
    max_windows : int, optional
        Read at most this many examples (bounds memory: ``max_windows * L``
        ids are held).
    validation : float
        Share of examples held out for early stopping and the reported loss.
    patience : int, optional
        Stop after this many epochs without a better held-out loss (best
        weights restored); None trains all ``epochs``.
    also_cbow : bool
        Also train a :class:`CBOW` with the same width on the same examples.
    seed : int
        Seeds the split, initialization, shuffling and masking.
    num_threads : int, optional
        Torch intra-op threads while training; None leaves torch's setting as it is.
    device : str, optional
        Torch device to train on (e.g. ``"cuda"``); default CPU. The saved
        models are moved back to the CPU.
    nproc : int
        Data-parallel processes (:func:`attnmoe.training.distributed.train_mlm_distributed`,
        used when ``nproc > 1`` or any of the next four options is set).
    precision : {"fp32", "bf16"}
        bf16 autocast (weights and optimizer stay fp32).
    checkpoint_dir : path-like, optional
        Periodic atomic checkpoints, one subfolder per model.
    checkpoint_every : int
        Steps between checkpoints (0: only at the end).
    resume : bool
        Continue from the newest checkpoint in ``checkpoint_dir``.
    bind_cores : bool
        Pin each process to its own CPUs (Linux).
    poll_allreduce : bool or None
        With ``nproc > 1`` on CPU: each process waits for the gradient
        all-reduce by polling instead of sleeping; ``None``: on when the
        processes x threads fit in the CPUs this process may use
        (:func:`~attnmoe.training.distributed.train_mlm_distributed`). No effect
        on one process.
    verbose : int
        0 silent; 1 progress messages and bars.
    vocab, data : optional
        A vocabulary and encoded examples to reuse (skips the passes over the
        file; e.g. several seeds on the same corpus).

    Returns
    -------
    TextTrainingResult
    """
    import torch

    path = resolve_corpus(corpus)
    if out is not None:  # before hours of training, not after
        check_replaceable(out, VOCAB_NAME)
    say = print if verbose > 0 else (lambda *a, **k: None)
    t0 = time.perf_counter()
    text = TextCorpus(path, tokenizer, mode=mode)
    if vocab is None:
        vocab = text.build_vocab(min_count=min_count, max_size=max_vocab, progress=verbose > 0)
    say(
        f"vocabulary: {len(vocab)} words (min_count={min_count}, max_vocab={max_vocab}); "
        f"{vocab.unknown_rate:.1%} of {vocab.meta.get('n_tokens', '?')} tokens are <unk>"
    )
    if len(vocab) < 2:  # only <unk>: every token the same, nothing to learn
        raise ValueError(
            f"min_count={min_count} keeps no word of {path} "
            f"({vocab.meta.get('n_tokens', '?')} tokens); lower --min-count"
        )
    # a bad model option fails here, before any data file is written
    config = AttentionConfig(
        vocab_size=len(vocab),
        max_len=length,
        d_model=d_model,
        n_heads=n_heads,
        n_layers=n_layers,
        block=block,  # type: ignore[arg-type]
        window=window,
    )
    distributed = nproc > 1 or checkpoint_dir is not None or precision != "fp32" or bind_cores
    streamed = None
    if data is None:
        if distributed and mode == "windows":
            # data-parallel ranks read their shards from a memory-mapped file
            folder = Path(checkpoint_dir or (Path(out).parent if out else tempfile.gettempdir()))
            folder.mkdir(parents=True, exist_ok=True)
            streamed = folder / f".attnmoe-train-windows-{os.getpid()}.npy"
        data = text.encode(
            vocab,
            length,
            stride=stride,
            max_examples=max_windows,
            validation=validation,
            seed=seed,
            progress=verbose > 0,
            train_path=streamed,
        )
    say(
        f"examples of length {length} ({mode}): "
        f"{data.stats.get('train_examples', len(data.train))} train, "
        f"{len(data.validation)} held out"
        + (" (stopped at --max-windows)" if data.truncated else "")
    )
    has_val = len(data.validation) > 0
    if patience is not None and not has_val:
        say("no held-out examples: early stopping is off")
        patience = None

    fit = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "validation": data.validation if has_val else 0.0,
        "validation_key_mask": data.validation_keys if has_val else None,
        "key_mask": data.train_keys,
        "patience": patience,
        "seed": seed,
        "verbose": verbose,
        "num_threads": num_threads,
    }
    if distributed:
        say(f"data-parallel training on {nproc} process(es) ({precision}); no early stopping")

    def fit_model(model: Any, name: str) -> Any:
        if not distributed:
            return train_mlm(model, data.train, **fit)
        if data.train_path is not None:
            source = ArraySource.from_npy(data.train_path)
        else:
            source = ArraySource(data.train)
        return train_mlm_distributed(
            model,
            source,
            global_batch=batch_size,
            epochs=epochs,
            lr=lr,
            seed=seed,
            nproc=nproc,
            device="cuda" if (device or "cpu").startswith("cuda") else "cpu",
            precision=precision,  # type: ignore[arg-type]
            num_threads=num_threads,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / name,
            checkpoint_every=checkpoint_every,
            resume=resume,
            verbose=verbose,
            bind_cores=bind_cores,
            poll_allreduce=poll_allreduce,
        )

    histories: dict[str, Any] = {}
    cbow = None
    try:  # the streamed windows go, whatever happens (they can be gigabytes)
        if distributed and data.train_keys is not None and not bool(data.train_keys.all()):
            raise ValueError(
                "--nproc/--checkpoint-dir/--precision/--bind-cores need --mode windows (no padding)"
            )
        torch.manual_seed(seed)
        attention = BidirectionalAttention(config).to(device or "cpu")
        masking = "all (one pass)" if n_layers == 1 else "random (15 %)"
        say(
            f"training BidirectionalAttention ({n_layers} layer(s), {n_heads} head(s), "
            f"masking {masking})"
        )
        histories["attention"] = fit_model(attention, ATTENTION_DIR)
        if also_cbow:
            torch.manual_seed(seed)
            cbow = CBOW(config).to(device or "cpu")
            say("training CBOW")
            histories["cbow"] = fit_model(cbow, CBOW_DIR)
    finally:
        if streamed is not None:
            streamed.unlink(missing_ok=True)
    models = {"attention": attention, "cbow": cbow}
    summary: dict[str, Any] = {}
    with torch_threads(num_threads):
        for name, h in histories.items():
            model = models[name]
            val = evaluate_mlm(model, data.validation, data.validation_keys) if has_val else None
            summary[name] = {"held_out_loss": val, **_history_dict(h)}
            best_epoch = getattr(h, "best_epoch", None)
            best = "" if best_epoch is None else f", best epoch {best_epoch}"
            loss = "n/a" if val is None else f"{val:.4f}"
            done = f"{h.epochs_run} epoch(s)" if hasattr(h, "epochs_run") else f"{h.steps} steps"
            early = " (stopped early)" if getattr(h, "stopped_early", False) else ""
            say(
                f"  {name}: held-out masked-word loss {loss} after {done}"
                f"{best}{early}, {h.seconds:.1f} s"
            )

    stats = {
        "corpus": str(path),
        "settings": {
            "length": length,
            "n_layers": n_layers,
            "n_heads": n_heads,
            "d_model": d_model,
            "block": block,
            "window": window,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "min_count": min_count,
            "max_vocab": max_vocab,
            "tokenizer": vocab.meta.get("tokenizer"),
            "mode": mode,
            "stride": stride,
            "max_windows": max_windows,
            "validation": validation,
            "patience": patience,
            "seed": seed,
        },
        "data": data.stats,
        "models": summary,
        "seconds": time.perf_counter() - t0,
    }
    attention.cpu()
    if cbow is not None:
        cbow.cpu()
    saved = None
    if out is not None:

        def write(tmp: Path) -> None:
            vocab.save(tmp / VOCAB_NAME)
            attention.save_pretrained(tmp / ATTENTION_DIR)
            if cbow is not None:
                cbow.save_pretrained(tmp / CBOW_DIR)
            (tmp / LOG_NAME).write_text(json.dumps(stats, indent=2), encoding="utf-8")

        with atomic_directory(out, marker=VOCAB_NAME) as staging:
            write(staging)
        saved = Path(out)
        say(f"saved: {saved}/ ({', '.join(sorted(p.name for p in saved.iterdir()))})")
    return TextTrainingResult(saved, vocab, attention, cbow, histories, stats)
