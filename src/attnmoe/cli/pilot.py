"""``attnmoe pilot`` (one pilot, or ``--compare`` several) and ``attnmoe demo`` (three
pilots on shipped data, then their comparison): :mod:`attnmoe.pilot` on files."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import pandas as pd

from .csv_files import add_sep, read_table
from .options import add_jobs, add_out
from .outputs import check_output

_PARQUET = (".parquet", ".pq")


def read_data(path: str, sep: str | None = None) -> pd.DataFrame:
    """A CSV (as :func:`~attnmoe.cli.csv_files.read_table` types it) or a Parquet file."""
    if path.lower().endswith(_PARQUET):
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} is not a readable Parquet file: {err}") from None
        if frame.empty:
            raise ValueError(f"{path} has no rows")
        return frame.reset_index(drop=True)
    return read_table(path, sep)[0]


def _params(text: str | None) -> dict:
    from ..bench.runner import parse_params

    return parse_params(text, "--params")


def _verdict(folder: Path, content: dict) -> None:
    for line in content["summary"]["verdict"][:1] or ["no verdict (see the page)"]:
        print(line)
    print(f"page: {folder / 'pilot.html'} (numbers: {folder / 'pilot.json'})")


def _run(args: argparse.Namespace, data_path: str, command: str) -> dict:
    from ..pilot import pilot

    check_output(args.out, inputs=[data_path, args.new], folder=True)
    data = read_data(data_path, args.sep)
    new = None if args.new is None else read_data(args.new, args.sep)
    return pilot(
        data,
        args.target,
        args.out,
        split_by=args.split_by,
        train=args.train,
        time=args.time,
        cutoff=args.cutoff,
        new=new,
        group=args.group,
        drop=args.drop,
        budget=args.budget,
        seeds=args.seeds,
        models=args.models,
        params=_params(args.params),
        jobs=args.jobs,
        progress=not args.quiet,
        data_name=Path(data_path).name,
        command=command,
    )


def _cmd_pilot(args: argparse.Namespace) -> int:
    command = "attnmoe " + shlex.join(getattr(args, "command_line", sys.argv[1:]))
    if args.compare:
        if args.data is not None:
            raise ValueError("--compare reads finished pilots: give their folders, not DATA")
        if args.out is None:
            raise ValueError("--compare needs --out DIR")
        return _compare(args.compare, Path(args.out))
    if args.data is None or args.target is None or args.out is None:
        raise ValueError("a pilot needs DATA, --target COL and --out DIR (or --compare A B ...)")
    content = _run(args, args.data, command)
    _verdict(Path(args.out), content)
    return 0


def _compare(folders: list[str], out: Path) -> int:
    from ..pilot import compare

    pilots = [Path(f) / "pilot.json" if Path(f).is_dir() else Path(f) for f in folders]
    check_output(out / "compare.html", inputs=pilots)
    compare(folders, out)
    print(
        f"comparison of {len(folders)} pilots: {out / 'compare.html'} "
        f"(numbers: {out / 'compare.json'})"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..pilot.examples import EXAMPLES, write_example

    out = Path(args.out)
    print(
        "attnmoe demo: three pilots on shipped tables, each trained on one part of the rows and\n"
        "scored on rows that differ (another region or a later period), attnmoe against the\n"
        "models a team would otherwise use; then one page that compares them.\n"
    )
    parser = argparse.ArgumentParser(prog="attnmoe pilot")
    _add_pilot_arguments(parser)
    verdicts = []
    for name, example in EXAMPLES.items():
        csv = write_example(name, out / "data")
        argv = [str(csv), *example.options, "--out", str(out / name), "--budget", args.budget]
        argv += ["--jobs", str(args.jobs)] + (["--seeds", str(args.seeds)] if args.seeds else [])
        print(f"{name}: {example.words}\n  attnmoe pilot {shlex.join(argv)}", flush=True)
        content = _run(parser.parse_args(argv), str(csv), "attnmoe pilot " + shlex.join(argv))
        verdicts.append((name, content))
    _compare([str(out / name) for name in EXAMPLES], out)
    print()
    for name, content in verdicts:
        print(f"{name}: " + (content["summary"]["verdict"] or ["no verdict"])[0])
        print(f"  page: {out / name / 'pilot.html'}")
    print(f"the three side by side: {out / 'compare.html'}")
    return 0


def _add_pilot_arguments(p: argparse.ArgumentParser) -> None:
    from ..pilot.plan import BUDGETS, MODELS

    p.add_argument("data", nargs="?", metavar="DATA", help="the table: CSV or Parquet")
    p.add_argument("--target", help="the class column")
    shift = p.add_argument_group("the shift: exactly one of")
    shift.add_argument("--split-by", metavar="COL", help="segments: the column that splits")
    shift.add_argument(
        "--train",
        nargs="+",
        metavar="VALUE",
        help="with --split-by: the values whose rows train (every other row is new)",
    )
    shift.add_argument(
        "--time",
        metavar="COL",
        help="time: rows before --cutoff train, the rest are new (numbers, or dates)",
    )
    shift.add_argument("--cutoff", metavar="VALUE", help="with --time: the first new value")
    shift.add_argument("--new", metavar="NEW", help="a second file (CSV or Parquet): the new rows")
    p.add_argument("--group", metavar="COL", help="fairness groups: accuracy per group, the audit")
    p.add_argument(
        "--drop",
        nargs="+",
        default=[],
        metavar="COL",
        help="columns that are not features (ids, free text)",
    )
    p.add_argument(
        "--budget",
        choices=list(BUDGETS),
        default="quick",
        help="seeds and attnmoe's "
        "cost-knob sweep: quick 3 seeds, 3 settings; standard 5, 5; thorough 10, "
        "18 (default quick)",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds per model (default: the budget's)"
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        default=None,
        help="default: all that are installed",
    )
    p.add_argument(
        "--params", default=None, help="attnmoe's fixed parameters, JSON, e.g. '{\"epochs\": 100}'"
    )
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="PILOT",
        help="pilot folders to put side by side in DIR/compare.html (no DATA then)",
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="fits at a time (default 1: timings undisturbed)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_sep(p)
    add_out(p, "the pilot's folder: pilot.html, pilot.json, runs.csv (a rerun resumes)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``pilot`` and ``demo``."""
    p = sub.add_parser(
        "pilot", help="attnmoe against the usual models on your table: effect against cost"
    )
    _add_pilot_arguments(p)
    p.set_defaults(func=_cmd_pilot)
    p = sub.add_parser("demo", help="the main demo: three pilots on shipped data (a few minutes)")
    p.add_argument("--budget", choices=["quick", "standard", "thorough"], default="quick")
    p.add_argument(
        "--seeds", type=int, default=None, help="seeds per model (default: the budget's)"
    )
    add_jobs(p, "fits at a time (default 2)")
    add_out(p, "output folder", default="runs/demo")
    p.set_defaults(func=_cmd_demo)
