"""``attnmoe report``, ``report-sentence`` and ``experts-hf``: the views of :mod:`attnmoe.explain`.

``report`` writes the HTML dashboard of a saved classifier on a CSV,
``report-sentence`` the experts of one sentence, and ``experts-hf`` prints a
Hugging Face layer's gates and experts over a sentence.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .csv_files import add_sep, read_table
from .options import add_out, add_random_state
from .outputs import check_output, staged_path


def _cmd_report(args: argparse.Namespace) -> int:
    from ..explain.report import write_report
    from ..tabular import AttentionMoEClassifier

    inputs = [args.data, args.shift_data]
    check_output(args.out, inputs=inputs, model_dirs=[args.model])
    clf = AttentionMoEClassifier.from_pretrained(args.model)
    data, _ = read_table(args.data, args.sep)
    shift = read_table(args.shift_data, args.sep)[0] if args.shift_data else None
    with staged_path(args.out) as staging:  # the old report stays until the new one is whole
        numbers = write_report(
            clf,
            data,
            staging,
            target=args.target,
            group=args.group,
            shift_data=shift,
            n_explained=args.rows,
            n_bootstrap=args.bootstrap,
            random_state=args.random_state,
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
    from ..explain.sentence import write_sentence_report

    check_output(args.out, model_dirs=[args.model])
    with staged_path(args.out) as staging:
        numbers = write_sentence_report(args.model, args.sentence, staging, layer=args.layer)
    print(f"report: {Path(args.out)} ({_scalars(numbers)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report``, ``report-sentence`` and ``experts-hf``."""
    p = sub.add_parser(
        "report",
        help="self-contained HTML report: expert usage, accuracy, calibration, shift, bias audit",
    )
    p.add_argument("model", help="directory written by AttentionMoEClassifier.save_pretrained")
    p.add_argument("data", help="CSV with the model's columns (and optionally target, group)")
    add_out(p, "HTML file to write", default="report.html")
    p.add_argument("--target", default=None, help="column with the true labels")
    p.add_argument("--group", default=None, help="column to audit by (bias audit)")
    p.add_argument("--shift-data", default=None, help="CSV of new data to compare usage with")
    add_sep(p)
    p.add_argument("--rows", type=int, default=5, help="rows whose top experts are listed")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the audit")
    add_random_state(p, "bootstrap seed")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "report-sentence",
        help="HTML view of one sentence: which word locations (experts) each word listens to",
    )
    p.add_argument("model", help="an `attnmoe train-text` output folder or a local HF model dir")
    p.add_argument("sentence", help="the sentence to show")
    p.add_argument("--layer", type=int, default=0, help="layer of a Hugging Face model")
    add_out(p, "HTML file to write", default="sentence.html")
    p.set_defaults(func=_cmd_report_sentence)

    _register_experts_hf(sub)


def _cmd_experts_hf(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..explain.huggingface import HFLayerExperts, format_top_experts

    view = HFLayerExperts(args.model_dir, layer=args.layer).view(args.sentence, args.mask)
    print(format_top_experts(view, args.top))
    if args.per_head:
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(view.top_experts(args.top, by="head").round(4).to_string(index=False))
    return 0 if view.output_error <= 1e-5 and view.gate_error <= 1e-5 else 1


def _register_experts_hf(sub: argparse._SubParsersAction) -> None:
    """``attnmoe experts-hf MODEL_DIR SENTENCE --layer L`` (imports transformers when it runs)."""
    p = sub.add_parser(
        "experts-hf",
        help="a Hugging Face BERT-family layer as gates and experts over a sentence's words",
    )
    p.add_argument("model_dir", help="local model directory (config.json, weights, tokenizer)")
    p.add_argument("sentence", help="the sentence to explain")
    p.add_argument("--layer", type=int, default=0, help="attention layer, 0-based (default 0)")
    p.add_argument("--top", type=int, default=3, help="experts shown per token")
    p.add_argument(
        "--mask",
        type=int,
        default=None,
        metavar="LOCATION",
        help="replace this location by the mask token first",
    )
    p.add_argument("--per-head", action="store_true", help="also print the per-head table")
    p.set_defaults(func=_cmd_experts_hf)
