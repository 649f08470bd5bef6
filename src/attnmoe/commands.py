"""Sub-commands beyond the core: demo, tabular benchmark, text training, word analogies."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def _cmd_bench_tabular(args: argparse.Namespace) -> int:
    from .bench.runner import (
        markdown_report,
        parse_params,
        parse_search,
        plan_runs,
        run_benchmark,
    )

    runs = plan_runs(args.settings, args.seeds, args.models, args.auto_mpg_seeds)
    out = Path(args.out)
    results = run_benchmark(
        runs,
        out / "runs.csv",
        jobs=args.jobs,
        attnmoe_params=parse_params(args.attnmoe_params),
        attnmoe_search=parse_search(args.attnmoe_search),
        unlabeled_test=args.attnmoe_unlabeled_test,
    )
    command = "attnmoe " + shlex.join(getattr(args, "command_line", sys.argv[1:]))
    report = markdown_report(results, command=command.strip())  # the planned runs only
    (out / "summary.md").write_text(report)
    print(report)
    print(f"every run: {out / 'runs.csv'}; summary: {out / 'summary.md'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .bench.runner import MODEL_NAMES, markdown_report, plan_runs, run_benchmark

    print(
        "attnmoe demo: auto-mpg under distribution shift (train on US cars, test on European\n"
        "and Japanese cars), attnmoe against the usual tabular models, next to the paper.\n"
    )
    runs = plan_runs([], 0, list(MODEL_NAMES), args.seeds)  # attnmoe and every baseline
    out = Path(args.out)
    results = run_benchmark(runs, out / "runs.csv", jobs=args.jobs)
    report = markdown_report(results, command=f"attnmoe demo --seeds {args.seeds}")
    (out / "summary.md").write_text(report)
    print(report)
    print(f"results: {out / 'runs.csv'}, {out / 'summary.md'}")
    return 0


def register_all(sub: argparse._SubParsersAction) -> None:
    from .bench.datasets import SIMULATION_SETTINGS
    from .bench.runner import MODEL_NAMES

    p = sub.add_parser("demo", help="the main demo: auto-mpg shift comparison (a few minutes)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per model (default 3)")
    p.add_argument("--jobs", type=int, default=2, help="parallel fits")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.set_defaults(func=_cmd_demo)

    from .tabular.cli import register as register_tabular

    register_tabular(sub)

    from .explain.cli import register as register_report

    register_report(sub)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    p = bench_sub.add_parser(
        "tabular", help="paper Tables 3-5: simulation settings x seeds and auto-mpg"
    )
    p.add_argument(
        "--settings",
        nargs="*",
        default=None,
        metavar="SETTING",
        help="simulation settings, e.g. 'k=5 corr=0.9 x_noise=0' (default all 12; none: only "
        f"auto-mpg). Known: {'; '.join(s.name for s in SIMULATION_SETTINGS)}",
    )
    p.add_argument("--seeds", type=int, default=20, help="simulation seeds per setting (<= 20)")
    p.add_argument("--auto-mpg-seeds", type=int, default=10)
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=list(MODEL_NAMES))
    p.add_argument("--jobs", type=int, default=2, help="parallel fits (one thread each)")
    p.add_argument("--attnmoe-params", default=None, help="JSON, e.g. '{\"n_ensembles\": 5}'")
    p.add_argument(
        "--attnmoe-search",
        default=None,
        help="JSON grid, e.g. '{\"epochs\": [200, 100, 400]}': attnmoe chooses among it on "
        "the least typical quarter of the training rows (AtypicalHoldout), then refits",
    )
    p.add_argument(
        "--attnmoe-unlabeled-test",
        action="store_true",
        help="transductive: attnmoe also trains on the test rows' features (never their "
        "labels) as X_unlabeled; the baselines do not, so read it as another protocol",
    )
    p.add_argument("--out", default="runs/bench-tabular", help="output folder (resumable)")
    p.set_defaults(func=_cmd_bench_tabular)
    from .bench.cost import register as register_cost

    register_cost(bench_sub)
    bench.set_defaults(func=lambda args: bench.print_help() or 0)

    from .explain.huggingface import register as register_experts_hf

    register_experts_hf(sub)  # imports transformers only when the command runs

    from .text.train import register as register_train_text

    register_train_text(sub)

    from .training.distributed.trainer import register_cli as register_train_ddp

    register_train_ddp(sub)

    try:
        from .text.analogy import register as register_analogy
    except ImportError:  # the text extra is not installed
        return
    register_analogy(sub)
