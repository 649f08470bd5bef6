"""``attnmoe report``: the HTML dashboard from a saved classifier and a CSV."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_report(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..tabular import AttentionMoEClassifier
    from .report import write_report

    clf = AttentionMoEClassifier.from_pretrained(args.model)
    data = pd.read_csv(args.data)
    shift = pd.read_csv(args.shift_data) if args.shift_data else None
    numbers = write_report(
        clf,
        data,
        args.out,
        target=args.target,
        group=args.group,
        shift_data=shift,
        n_explained=args.rows,
        n_bootstrap=args.bootstrap,
        random_state=args.seed,
    )
    print(f"report: {Path(args.out)} ({_scalars(numbers)})")
    return 0


def _scalars(numbers: dict) -> str:
    """The single numbers of a report's summary, ``key=value`` (lists and tables left out)."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in numbers.items()
        if isinstance(v, (int, float, str))
    )


def _cmd_report_sentence(args: argparse.Namespace) -> int:
    from .sentence import write_sentence_report

    numbers = write_sentence_report(args.model, args.sentence, args.out, layer=args.layer)
    print(f"report: {Path(args.out)} ({_scalars(numbers)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` sub-command."""
    p = sub.add_parser(
        "report",
        help="self-contained HTML report: expert usage, accuracy, calibration, shift, bias audit",
    )
    p.add_argument("model", help="directory written by AttentionMoEClassifier.save_pretrained")
    p.add_argument("data", help="CSV with the model's columns (and optionally target, group)")
    p.add_argument("--out", default="report.html", help="HTML file to write")
    p.add_argument("--target", default=None, help="column with the true labels")
    p.add_argument("--group", default=None, help="column to audit by (bias audit)")
    p.add_argument("--shift-data", default=None, help="CSV of new data to compare usage with")
    p.add_argument("--rows", type=int, default=5, help="rows whose top experts are listed")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the audit")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "report-sentence",
        help="HTML view of one sentence: which word locations (experts) each word listens to",
    )
    p.add_argument("model", help="an `attnmoe train-text` output folder or a local HF model dir")
    p.add_argument("sentence", help="the sentence to show")
    p.add_argument("--layer", type=int, default=0, help="layer of a Hugging Face model")
    p.add_argument("--out", default="sentence.html", help="HTML file to write")
    p.set_defaults(func=_cmd_report_sentence)
