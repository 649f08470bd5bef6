"""Run the fuzz suite with more examples and write its outcome counts.

Usage: .venv/bin/python benchmarks/fuzz_report.py [--examples 10]

Runs ``pytest tests/fuzz`` (the regression tests left out) with every fuzz
test's example count multiplied by ``--examples`` (``ATTNMOE_FUZZ_EXAMPLES``)
and the suite's tallies written to a file (``ATTNMOE_FUZZ_REPORT``), then
writes ``benchmarks/results/reliability/fuzz.md`` (every suite's counts) and
that folder's ``SECTION.md`` (the totals, for docs/benchmarks.md), and the
reliability row of ``benchmarks/results/TARGETS.md``. Examples are drawn
deterministically (the tests' "ci" hypothesis profile): a rerun gives the same
cases. Rebuild the page afterwards with ``benchmarks/build_docs.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from attnmoe.bench.machine import machine_description

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
OUT = RESULTS / "reliability"
#: the TARGETS.md row this script owns, found by its first cell
TARGET_ROW = "| every fuzzed run of `attnmoe`"


def run_suite(examples: int, report: Path) -> tuple[int, str, float]:
    """pytest on tests/fuzz; its exit code, its last line and the seconds it took."""
    env = dict(os.environ, ATTNMOE_FUZZ_EXAMPLES=str(examples), ATTNMOE_FUZZ_REPORT=str(report))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz"]
    command += ["--ignore=tests/fuzz/test_regressions.py"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT.parent, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    return done.returncode, lines[-1] if lines else "(no output)", seconds


def summary(counts: dict[str, dict[str, int]]) -> list[dict]:
    """Per family of suites (CSV files, model folders, options): cases and outcomes."""
    families: dict[str, dict[str, int]] = {}
    for suite, tally in counts.items():
        if suite == "error messages":
            continue
        row = families.setdefault(suite.split(":")[0], {})
        usage = tally.get("error: usage (argparse)", 0)
        violated = tally.get("property violated", 0)
        for key, n in [
            ("cases", tally["cases"]),
            ("success", tally.get("success", 0)),
            ("error", tally["cases"] - tally.get("success", 0) - usage - violated),
            ("usage", usage),
            ("violated", violated),
        ]:
            row[key] = row.get(key, 0) + n
    rows = [{"family": name, **row} for name, row in sorted(families.items())]
    total = {k: sum(r[k] for r in rows) for k in ("cases", "success", "error", "usage", "violated")}
    return [*rows, {"family": "**all**", **total}]


FAMILIES = {
    "csv": "random CSV files: `fit`, `predict`, `impute`, `report`",
    "model folder": "damaged model folders: `predict`, `convert`, `from_pretrained`, `load_model`",
    "options": "random option values: `fit`, `predict`, `impute`, `report`, `convert`, "
    "`train-text`",
    "**all**": "**all**",
}


def section(rows: list[dict], command: str, verdict: str, examples: int) -> str:
    table = [
        "| runs of | cases | succeeded, result checked | one-line `error:` | argparse usage "
        "error | property violated |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {FAMILIES.get(r['family'], r['family'])} | {r['cases']:,} | {r['success']:,} | "
            f"{r['error']:,} | {r['usage']:,} | {r['violated']:,} |"
        )
    return f"""## Reliability: the fuzzed command line

<!-- written by benchmarks/fuzz_report.py: edit the script, not this file -->

Command: `{command}` ({verdict}). The fuzz suite (`tests/fuzz/`, issue 23) feeds
`attnmoe`'s `main()` random CSV files (column types, gaps, encodings, delimiters,
odd and repeated column names, huge cells, inf/NaN, header-only and one-row files),
copies of saved model folders with random damage (byte flips, truncations, JSON
fields of another type, files swapped with another model's, files deleted) and
random option values (out of range, wrong types, unknown choices, missing
arguments, missing paths, outputs equal to inputs). Every run must either succeed
with a result checked against the input and the undamaged model, or exit 1 or 2
with exactly one `error:` line (argparse's own usage error counts as such); never a
traceback, and no input file may change. The default test run draws
1/{examples} as many cases.

{chr(10).join(table)}

Every suite's counts and the errors by kind: [`fuzz.md`](fuzz.md).
"""


def write_target_row(rows: list[dict]) -> None:
    """The reliability row of TARGETS.md, with the totals of this run."""
    total = rows[-1]
    met = "yes" if total["violated"] == 0 else "no"
    row = (
        f"{TARGET_ROW} succeeds with a checked result or exits with one `error:` line | "
        f"{total['cases']:,} cases: {total['success']:,} succeeded, "
        f"{total['error'] + total['usage']:,} one-line errors, {total['violated']:,} "
        f"violations | {met} | [reliability](#reliability-the-fuzzed-command-line) |"
    )
    path = RESULTS / "TARGETS.md"
    lines = path.read_text().splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith(TARGET_ROW)]
    if at:
        lines[at[0]] = row
    else:  # after the table's last row
        last = max(i for i, line in enumerate(lines) if line.startswith("| "))
        lines.insert(last + 1, row)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10, help="example count multiplier")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.md"
        code, last, seconds = run_suite(args.examples, report)
        if not report.exists():
            sys.exit(f"the fuzz suite wrote no tallies (pytest: {last})")
        tables = report.read_text()
        counts = json.loads(report.with_suffix(".json").read_text())
    command = ".venv/bin/python benchmarks/fuzz_report.py" + (
        "" if args.examples == 10 else f" --examples {args.examples}"
    )
    verdict = "pytest passed" if code == 0 else f"pytest FAILED: {last}"
    rows = summary(counts)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fuzz.md").write_text(
        f"## Fuzz suite outcomes\n\nCommand: `{command}`\n\n"
        f"Machine: {machine_description('at end')}.\n\n"
        f"pytest: {last} ({seconds:.0f} s; examples x{args.examples} the default run's).\n\n"
        "An error's kind is read from its message (`tests/fuzz/harness.py`, `error_kind`).\n\n"
        + tables
    )
    (OUT / "SECTION.md").write_text(section(rows, command, verdict, args.examples))
    write_target_row(rows)
    print(f"wrote {OUT / 'fuzz.md'}, {OUT / 'SECTION.md'} and the TARGETS.md row ({verdict})")
    sys.exit(0 if code == 0 else 1)


if __name__ == "__main__":
    main()
