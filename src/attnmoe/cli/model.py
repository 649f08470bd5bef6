"""``attnmoe version``, ``convert`` and ``check-equivalence``: the model's two forms."""

from __future__ import annotations

import argparse
import sys

from .options import add_seed
from .outputs import check_output, say_replaced


def _cmd_version(args: argparse.Namespace) -> int:
    import torch

    from .._version import __version__

    print(f"attnmoe {__version__} (torch {torch.__version__})")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..model import BidirectionalAttention, ContinuousWordExperts, load_model

    if (Path(args.source) / "classifier.json").exists():
        raise ValueError(
            f"{args.source} holds a tabular classifier (attnmoe fit); convert works on "
            "attention or experts model folders (attnmoe train-text, save_pretrained)"
        )
    check_output(args.destination, model_dirs=[args.source], folder=True, option="DESTINATION")
    model = load_model(args.source)
    if isinstance(model, BidirectionalAttention):
        converted = model.to_experts()
    elif isinstance(model, ContinuousWordExperts):
        converted = model.to_attention()
    else:
        print(f"error: {type(model).__name__} has no other form", file=sys.stderr)
        return 2
    if args.check:
        gen = torch.Generator().manual_seed(0)
        cfg = model.config
        x = torch.randint(0, cfg.vocab_size, (8, cfg.max_len), generator=gen)
        with torch.no_grad():
            diff = (model.masked_log_probs(x) - converted.masked_log_probs(x)).abs().max()
        print(f"largest |log-prob difference| on 8 random sentences: {float(diff):.3g}")
    replaced = say_replaced(args.destination)
    converted.save_pretrained(args.destination)
    replaced()
    print(f"{type(model).__name__} -> {type(converted).__name__}: {args.destination}")
    return 0


def _cmd_check_equivalence(args: argparse.Namespace) -> int:
    import torch

    from ..model.equivalence import check_equivalence

    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    tol = args.tol if args.tol is not None else (1e-10 if args.dtype == "float64" else 1e-5)
    cases = check_equivalence(
        n_heads=tuple(args.n_heads),
        n_layers=tuple(args.n_layers),
        blocks=tuple(args.blocks),
        dtype=dtype,
        std=args.std,
        seed=args.seed,
    )
    header = ("block", "heads", "layers", "experts", "round-trip", "one-pass")
    print("{:6} {:>5} {:>6} {:>10} {:>10} {:>10}".format(*header))
    failed = 0
    for c in cases:
        one_pass = "-" if c.one_pass_vs_copies is None else f"{c.one_pass_vs_copies:.2e}"
        flag = "" if c.worst <= tol else "  FAIL"
        failed += bool(flag)
        print(
            f"{c.block:6} {c.n_heads:>5} {c.n_layers:>6} {c.experts_vs_attention:>10.2e} "
            f"{c.round_trip_vs_attention:>10.2e} {one_pass:>10}{flag}"
        )
    print(f"{len(cases) - failed}/{len(cases)} configurations within {tol:g} ({args.dtype})")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``version``, ``convert`` and ``check-equivalence``."""
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)

    p = sub.add_parser("convert", help="convert a saved model to its other form")
    p.add_argument("source", help="directory written by save_pretrained")
    p.add_argument("destination", help="directory to write the converted model to")
    p.add_argument("--check", action="store_true", help="compare the forms on random sentences")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "check-equivalence",
        help="compare the attention and experts forms on random models",
    )
    p.add_argument("--n-heads", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--n-layers", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--blocks", nargs="+", choices=["pure", "bert"], default=["pure", "bert"])
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--std", type=float, default=0.3, help="scale of the random weights")
    p.add_argument("--tol", type=float, default=None, help="default 1e-10 (float64), 1e-5")
    add_seed(p)
    p.set_defaults(func=_cmd_check_equivalence)
