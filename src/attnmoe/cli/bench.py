"""``attnmoe bench tabular``, ``bench real`` and ``bench cost``: runs of
:mod:`attnmoe.bench`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .options import add_auto_mpg_seeds, add_jobs, add_out, add_settings
from .outputs import write_text


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed (also right when main() is called with an argv list)."""
    return ("attnmoe " + shlex.join(getattr(args, "command_line", sys.argv[1:]))).strip()


def _publish(out: Path, report: str, results_line: str) -> int:
    """Write ``report`` to ``out/summary.md``, print it and where the results are."""
    write_text(out / "summary.md", report, quiet=True)  # remade from runs.csv each run
    print(report)
    print(results_line)
    return 0


def _cmd_bench_tabular(args: argparse.Namespace) -> int:
    from ..bench.runner import (
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
    report = markdown_report(results, command=_command_line(args))  # the planned runs only
    return _publish(out, report, f"every run: {out / 'runs.csv'}; summary: {out / 'summary.md'}")


def _cmd_bench_real(args: argparse.Namespace) -> int:
    from ..bench.real_bench import (
        plan_real_runs,
        real_markdown_report,
        run_real_benchmark,
        suite_facts,
    )
    from ..bench.runner import parse_params

    runs = plan_real_runs(args.tables, args.models, args.seeds, args.protocols)
    out = Path(args.out)
    results = run_real_benchmark(
        runs,
        out / "runs.csv",
        jobs=args.jobs,
        attnmoe_params=parse_params(args.attnmoe_params),
        fit=not args.summary_only,
    )
    facts = suite_facts(list(dict.fromkeys(results["table"])), out / "shift.csv")
    report = real_markdown_report(results, facts, command=_command_line(args))
    return _publish(out, report, f"every run: {out / 'runs.csv'}; summary: {out / 'summary.md'}")


def _cmd_bench_cost(args: argparse.Namespace) -> int:
    from ..bench.cost import QUICK, cost_benchmark, plan_cost_runs

    grid = {
        "top_k": args.top_k,
        "n_heads": args.n_heads,
        "n_layers": args.n_layers,
        "seeds": args.seeds,
        "auto_mpg_seeds": args.auto_mpg_seeds,
        "epochs": args.epochs,
    }
    if args.quick:
        grid.update(QUICK)
    runs = plan_cost_runs(settings=args.settings, **grid)
    # the equivalent full command (also right when main() is called with an argv list)
    top_k = " ".join("none" if k is None else str(k) for k in grid["top_k"])
    settings = " ".join(shlex.quote(s) for s in args.settings)
    command = (
        f"attnmoe bench cost --top-k {top_k} --n-heads {' '.join(map(str, grid['n_heads']))} "
        f"--n-layers {' '.join(map(str, grid['n_layers']))} --settings {settings} "
        f"--seeds {grid['seeds']} --auto-mpg-seeds {grid['auto_mpg_seeds']} "
        f"--epochs {grid['epochs']} --jobs {args.jobs} --out {shlex.quote(str(args.out))}"
    )
    _, report = cost_benchmark(runs, args.out, jobs=args.jobs, command=command)
    print(report)
    out = Path(args.out)
    print(
        f"every run: {out / 'runs.csv'}; summary: {out / 'summary.md'}; plot: {out / 'pareto.png'}"
    )
    return 0


def _parse_top_k(text: str) -> int | None:
    return None if text.lower() in ("none", "dense", "0") else int(text)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` (with ``bench tabular``, ``bench real`` and ``bench cost``)."""
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    _register_bench_tabular(bench_sub)
    _register_bench_real(bench_sub)
    _register_bench_cost(bench_sub)
    bench.set_defaults(func=lambda args: bench.print_help() or 0)


def _register_bench_tabular(bench_sub: argparse._SubParsersAction) -> None:
    from ..bench.datasets import SIMULATION_SETTINGS
    from ..bench.runner import MODEL_NAMES

    p = bench_sub.add_parser(
        "tabular", help="paper Tables 3-5: simulation settings x seeds and auto-mpg"
    )
    add_settings(
        p,
        default=None,
        help="simulation settings, e.g. 'k=5 corr=0.9 x_noise=0' (default all 12; none: only "
        f"auto-mpg). Known: {'; '.join(s.name for s in SIMULATION_SETTINGS)}",
    )
    p.add_argument("--seeds", type=int, default=20, help="simulation seeds per setting (<= 20)")
    add_auto_mpg_seeds(p, 10)
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=list(MODEL_NAMES))
    add_jobs(p, "parallel fits (one thread each)")
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
    add_out(p, "output folder (resumable)", default="runs/bench-tabular")
    p.set_defaults(func=_cmd_bench_tabular)


def _register_bench_real(bench_sub: argparse._SubParsersAction) -> None:
    from ..bench.real_bench import PROTOCOLS, REAL_MODELS
    from ..bench.real_tables import REAL_TABLES

    p = bench_sub.add_parser(
        "real", help="real tables under a natural shift: attnmoe against the usual models"
    )
    p.add_argument(
        "--tables", nargs="+", default=None, choices=list(REAL_TABLES), help="default all"
    )
    p.add_argument("--models", nargs="+", default=list(REAL_MODELS), choices=list(REAL_MODELS))
    p.add_argument("--seeds", type=int, default=5, help="seeds per model (default 5)")
    p.add_argument(
        "--protocols",
        nargs="+",
        default=list(PROTOCOLS),
        choices=list(PROTOCOLS),
        help="inductive: training rows only; transductive: attnmoe also trains on the test "
        "rows' features (never their labels). Reported apart (default both)",
    )
    add_jobs(p, "parallel fits (one thread each)")
    p.add_argument("--attnmoe-params", default=None, help="JSON, e.g. '{\"n_ensembles\": 5}'")
    add_out(p, "output folder (resumable)", default="runs/bench-real")
    p.add_argument(
        "--summary-only",
        action="store_true",
        help="fit nothing: summarise the planned runs already recorded in the folder "
        "(a cell with fewer runs says n=)",
    )
    p.set_defaults(func=_cmd_bench_real)


def _register_bench_cost(bench_sub: argparse._SubParsersAction) -> None:
    from ..bench.cost import (
        DEFAULT_EPOCHS,
        DEFAULT_HEADS,
        DEFAULT_LAYERS,
        DEFAULT_SETTING,
        DEFAULT_TOP_K,
    )

    p = bench_sub.add_parser(
        "cost", help="cost knobs (top_k, n_heads, n_layers): time, memory, accuracy, Pareto front"
    )
    p.add_argument(
        "--top-k",
        nargs="+",
        type=_parse_top_k,
        default=list(DEFAULT_TOP_K),
        metavar="K",
        help="sparse gating values; 'none' = dense (default none 3 2 1)",
    )
    p.add_argument("--n-heads", nargs="+", type=int, default=list(DEFAULT_HEADS))
    p.add_argument("--n-layers", nargs="+", type=int, default=list(DEFAULT_LAYERS))
    add_settings(
        p,
        default=[DEFAULT_SETTING],
        help=f"simulation settings (default '{DEFAULT_SETTING}'; none: only auto-mpg)",
    )
    p.add_argument("--seeds", type=int, default=2, help="simulation seeds per setting")
    add_auto_mpg_seeds(p, 3)
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    add_jobs(p, "runs at a time (one process each)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny grid (2 configs, 1 epoch, 1 seed per dataset) for a smoke test",
    )
    add_out(p, "output folder (resumable)", default="benchmarks/results/cost")
    p.set_defaults(func=_cmd_bench_cost)
