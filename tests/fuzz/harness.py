"""Running ``attnmoe`` in-process on fuzzed input, and the property every run must keep.

:func:`run_cli` calls :func:`attnmoe.cli.main` with stdout and stderr captured and
every input file hashed before and after; :func:`check_outcome` asserts the
property of issue 23: exit 0 with a result the caller then checks, or exit 1/2
with exactly one ``error:`` line on stderr (``warning:`` lines allowed), or
argparse's own usage error (exit 2) -- never an exception escaping ``main()``,
never a changed input. :class:`Recorder` tallies the outcomes and, when
``ATTNMOE_FUZZ_REPORT`` names a file, writes them there as Markdown.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings

from attnmoe.cli import main

#: ``ATTNMOE_FUZZ_EXAMPLES=N`` multiplies every fuzz test's example count (the report script)
SCALE = max(1, int(os.environ.get("ATTNMOE_FUZZ_EXAMPLES", "1")))


def fuzz_settings(max_examples: int) -> settings:
    """The project's profile with ``max_examples`` (times :data:`SCALE`) examples."""
    return settings(
        max_examples=max_examples * SCALE,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def file_hashes(paths: Iterable[Path]) -> dict[str, str]:
    """SHA-256 of every file under ``paths`` (files, or folders walked whole)."""
    hashes = {}
    for path in paths:
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.exists():
                hashes[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return hashes


@dataclass
class Outcome:
    """What one run of ``main()`` did."""

    argv: list[str]
    code: int
    stdout: str
    stderr: str
    usage: bool  # argparse's own usage error (SystemExit 2)
    crash: str | None  # the traceback of an exception that escaped main()

    @property
    def error_line(self) -> str | None:
        lines = [line for line in screen_lines(self.stderr) if line.startswith("error:")]
        return lines[0] if lines else None


def run_cli(argv: Sequence[str], inputs: Iterable[Path] = ()) -> Outcome:
    """``main(argv)`` with its output captured; asserts that no file of ``inputs`` changed."""
    inputs = list(inputs)
    before = file_hashes(inputs)
    out, err = io.StringIO(), io.StringIO()
    usage, crash = False, None
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("default")  # as in a shell, whatever the test's filters
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:  # argparse: usage error (2) or --help (0)
            code = exit_.code if isinstance(exit_.code, int) else 2
            usage = code == 2
        except Exception:  # the very thing the fuzzer hunts
            code, crash = -1, traceback.format_exc()
    outcome = Outcome([str(a) for a in argv], code, out.getvalue(), err.getvalue(), usage, crash)
    after = file_hashes(inputs)
    assert after == before, f"an input file changed: {argv}\n{outcome.stdout}{outcome.stderr}"
    return outcome


def screen_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` as a terminal leaves them: a progress bar (redrawn
    after ``\\r`` and cleared when done) leaves nothing, or what followed it."""
    lines = []
    pieces = stderr.split("\n")
    for line in pieces[:-1] if pieces[-1] == "" else pieces:
        shown = line.split("\r")[-1]
        if shown.strip() or "\r" not in line:
            lines.append(shown)
    return lines


def check_outcome(outcome: Outcome) -> bool:
    """Assert the property; True when the run succeeded (the caller checks its result)."""
    shown = f"argv={outcome.argv}\nstdout:\n{outcome.stdout}\nstderr:\n{outcome.stderr}"
    assert outcome.crash is None, f"exception escaped main():\n{outcome.crash}\n{shown}"
    if outcome.usage:
        assert outcome.stderr.rstrip().splitlines()[-1].startswith("attnmoe"), shown
        return False
    lines = screen_lines(outcome.stderr)
    if outcome.code == 0:
        assert all(line.startswith("warning:") for line in lines), shown
        return True
    assert outcome.code in (1, 2), f"exit code {outcome.code}\n{shown}"
    errors = [line for line in lines if line.startswith("error:")]
    others = [line for line in lines if not line.startswith(("error:", "warning:"))]
    assert len(errors) == 1 and not others, f"not one error line:\n{shown}"
    assert errors[0].strip() != "error:", f"an empty error message:\n{shown}"
    return False


# The kind of an error, from its message: the first pattern that matches names it.
_KINDS = (
    ("output would overwrite an input", r"is the input|inside the model folder|holds the"),
    ("model file", r"manifest|config\.json|classifier\.json|safetensors|member_|model folder"),
    ("missing file", r"No such file|does not exist|not found|Is a directory|is a folder"),
    ("CSV content", r"CSV|column|rows|UTF-8|header|DATA|target"),
    ("option value", r"--|must be|parameter|JSON"),
)


def error_kind(outcome: Outcome) -> str:
    """A short name for what kind of error ``outcome`` reported."""
    if outcome.usage:
        return "usage (argparse)"
    message = outcome.error_line or ""
    for kind, pattern in _KINDS:
        if re.search(pattern, message):
            return kind
    return "other"


class Recorder:
    """Tallies the fuzz runs: per suite, cases and outcomes (success, or error by kind)."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {}
        self.messages: Counter = Counter()  # the error lines, paths left out

    def add(self, suite: str, outcome: Outcome, ok: bool) -> None:
        tally = self.counts.setdefault(suite, Counter())
        tally["cases"] += 1
        tally["success" if ok else f"error: {error_kind(outcome)}"] += 1
        if not ok:
            message = outcome.error_line or outcome.stderr.strip().split("\n")[-1]
            self.messages[re.sub(r"/tmp/\S*", "PATH", message)[:120]] += 1

    def add_violation(self, suite: str) -> None:
        """A run that broke the property (the test fails; hypothesis then shrinks it)."""
        tally = self.counts.setdefault(suite, Counter())
        tally["cases"] += 1
        tally["property violated"] += 1

    def markdown(self) -> str:
        """The tallies as a Markdown table per suite, and the totals."""
        total: Counter = Counter()
        parts = []
        for suite, tally in sorted(self.counts.items()):
            total.update(tally)
            parts.append(_table(suite, tally))
        parts.append(_table("all suites", total))
        return "\n\n".join(parts) + "\n"


def _table(title: str, tally: Counter) -> str:
    rows = [f"### {title}", "", "| outcome | runs |", "|---|---:|"]
    rows.append(f"| cases | {tally['cases']:,} |")
    keys = ["success", *sorted(k for k in tally if k.startswith("error")), "property violated"]
    for key in keys:
        rows.append(f"| {key} | {tally.get(key, 0):,} |")
    return "\n".join(rows)


RECORDER = Recorder()


def check_and_record(suite: str, outcome: Outcome, verify: Callable[[], None] | None = None):
    """:func:`check_outcome`, then ``verify()`` on success; the outcome tallied in :data:`RECORDER`.

    Returns whether the run succeeded.
    """
    try:
        ok = check_outcome(outcome)
        if ok and verify is not None:
            verify()
    except AssertionError:
        RECORDER.add_violation(suite)
        raise
    RECORDER.add(suite, outcome, ok)
    return ok
