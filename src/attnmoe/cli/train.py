"""``attnmoe train-ddp``: data-parallel masked-word training (``torch.distributed``)."""

from __future__ import annotations

import argparse
import os
import warnings

from .options import (
    add_checkpoint_options,
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


def _parse_count(text: str) -> int:
    """``"100M"`` -> 100_000_000 (suffixes k, M, G)."""
    scale = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}
    if text and text[-1] in scale:
        return int(float(text[:-1]) * scale[text[-1]])
    return int(text)


def warn_if_nothing_to_resume(args: argparse.Namespace) -> None:
    """``--resume`` with no checkpoint yet: one warning (the first run of a resumable job)."""
    from ..training.checkpoint import list_checkpoints

    if not (args.resume and args.checkpoint_dir) or int(os.environ.get("RANK", "0")) != 0:
        return
    if not list_checkpoints(args.checkpoint_dir):
        warnings.warn(
            f"--resume: no checkpoint in {args.checkpoint_dir} yet; starting at step 0",
            UserWarning,
            stacklevel=2,
        )


def _check_ids(source, vocab_size: int, path: str) -> None:
    """Every token id of ``source`` in ``0 .. vocab_size - 1``, checked once, before training."""
    low, high = source.id_range()
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"{path} holds token ids {low}..{high}, outside the model's vocabulary "
            f"0..{vocab_size - 1} (--vocab-size or the --init model's)"
        )


# the sizes of a model built without --init; with --init the loaded model's are used
_NEW_MODEL = {"d_model": 64, "n_heads": 2, "n_layers": 1, "block": "pure"}


def _given(args: argparse.Namespace, name: str, default):
    value = getattr(args, name)
    return default if value is None else value


def _check_init_sizes(args: argparse.Namespace, config) -> None:
    """Refuse a size option that differs from the ``--init`` model's (one equal to it is fine)."""
    for name in ("vocab_size", *_NEW_MODEL):
        given, loaded = getattr(args, name), getattr(config, name, None)
        if given is not None and given != loaded:
            flag = "--" + name.replace("_", "-")
            raise ValueError(
                f"{flag} {given} differs from the --init model's {name} {loaded}: "
                f"leave {flag} out (the --init model's sizes are used)"
            )


def _cmd_train_ddp(args: argparse.Namespace) -> int:
    import torch

    from ..model import AttentionConfig, BidirectionalAttention, load_model
    from ..model.io import CONFIG_NAME, check_replaceable
    from ..training.distributed import ArraySource, SyntheticSource, train_mlm_distributed

    if (args.tokens is None) == (args.synthetic_tokens is None):
        raise ValueError("give exactly one of --tokens FILE.npy and --synthetic-tokens N")
    if args.resume and args.checkpoint_dir is None:  # before the library says it in its words
        raise ValueError("--resume needs --checkpoint-dir")
    if args.out is not None:  # refuse a folder that is not a saved model before training
        check_output(args.out, inputs=[args.tokens], model_dirs=[args.init], folder=True)
        check_output(
            args.out, model_dirs=[args.checkpoint_dir], folder=True, dir_kind="checkpoint folder"
        )
        check_replaceable(args.out, CONFIG_NAME)
    if args.tokens is not None:
        source = ArraySource.from_npy(args.tokens, args.window)
    else:
        if args.vocab_size is None:
            raise ValueError("--synthetic-tokens needs --vocab-size")
        source = SyntheticSource(
            _parse_count(args.synthetic_tokens), args.window or 16, args.vocab_size, seed=args.seed
        )
    warn_if_nothing_to_resume(args)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    if args.init is not None:
        model = load_model(args.init)  # after the seed: building it draws random weights first
        _check_init_sizes(args, model.config)
    else:
        if args.vocab_size is None:
            raise ValueError("--vocab-size is needed to build a new model (or pass --init)")
        model = BidirectionalAttention(
            AttentionConfig(
                vocab_size=args.vocab_size,
                max_len=source.window,
                **{name: _given(args, name, default) for name, default in _NEW_MODEL.items()},
            )
        )
    if isinstance(source, ArraySource):
        _check_ids(source, model.config.vocab_size, args.tokens)
    history = train_mlm_distributed(
        model,
        source,
        global_batch=args.global_batch,
        steps=args.steps,
        epochs=args.epochs if args.steps is None else None,
        lr=args.lr,
        seed=args.seed,
        nproc=args.nproc,
        device=args.device,
        precision=args.precision,
        num_threads=args.num_threads,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        resume=args.resume,
        log_every=args.log_every,
        verbose=0 if args.quiet else 1,
        bind_cores=args.bind_cores,
        poll_allreduce=args.poll_allreduce,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        if args.out is not None:
            replaced = say_replaced(args.out)
            model.to("cpu").save_pretrained(args.out)
            replaced()
        last = history.train_loss[-1] if history.train_loss else float("nan")
        print(
            f"{history.steps} steps on {history.world_size} process(es) "
            f"(from step {history.start_step}"
            + ("; ranks polled the all-reduce" if history.polled else "")
            + f"): final loss {last:.4f}, "
            f"{history.predictions_per_second:,.0f} masked predictions/s, "
            f"peak RSS per process {', '.join(f'{r:.0f}' for r in history.peak_rss_mib)} MiB"
            + (f"; model: {args.out}" if args.out else "")
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train-ddp``."""
    p = sub.add_parser(
        "train-ddp",
        help="data-parallel MLM training (torch.distributed; runs under torchrun too)",
        description="Masked-word training with DistributedDataParallel: --nproc local "
        "processes, or one rank per process under torchrun (see docs/scale.md).",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument("--tokens", help=".npy of integer token ids: (N, L) windows or a 1-D stream")
    data.add_argument(
        "--synthetic-tokens", help="a generated corpus of this many tokens, e.g. 100M"
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="tokens per window: required for a 1-D --tokens stream (2-D rows are windows "
        "already); default 16 with --synthetic-tokens",
    )
    p.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="token ids 0 .. N-1: needed for a new model and --synthetic-tokens (--init: its own)",
    )
    p.add_argument("--init", default=None, help="start from this saved model directory")
    # None: a new model's default below, or the --init model's (an other value is refused)
    p.add_argument(
        "--d-model", type=int, default=None, help="model width (default 64; --init: its own)"
    )
    p.add_argument(
        "--n-heads", type=int, default=None, help="attention heads (default 2; --init: its own)"
    )
    p.add_argument("--n-layers", type=int, default=None, help="layers (default 1; --init: its own)")
    p.add_argument(
        "--block",
        choices=["pure", "bert"],
        default=None,
        help="layer form (default pure; --init: its own)",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None)
    budget.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--global-batch", type=int, default=64, help="windows per step, all ranks")
    p.add_argument("--lr", type=float, default=1e-3)
    add_seed(p)
    add_nproc(p, "local processes (ignored under torchrun)")
    add_num_threads(p, default=None, help="torch threads per process")
    add_ddp_options(
        p,
        bind_cores_help="pin each local process to its own CPUs (Linux; see docs/scale.md)",
        poll_allreduce_help="wait for the gradient all-reduce by polling instead of sleeping "
        "(gloo, CPU; default: on when the processes x --num-threads fit in the CPUs; see "
        "docs/scale.md)",
    )
    add_device(p, choices=["cpu", "cuda"], default="cpu")
    add_precision(p)
    add_checkpoint_options(
        p,
        dir_help=None,
        every_help="steps (0: only at the end)",
        resume_help="continue from the newest checkpoint",
    )
    p.add_argument("--keep-checkpoints", type=int, default=2)
    add_out(p, "save the final model here")
    p.add_argument("--log-every", type=int, default=100)
    add_quiet(p)
    p.set_defaults(func=_cmd_train_ddp)
