"""The ``attnmoe`` command line.

One module per command family; each exposes ``register(sub)``, which adds its
sub-commands to the top-level parser's sub-parsers, and the command functions
there parse, call the library and print. Options that several commands share are
defined once in :mod:`attnmoe.cli.options`. The library never imports this
package.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from . import bench, explain, model, pilot, serve, tabular, text, train

#: the command families, in the order ``attnmoe --help`` lists them
COMMAND_FAMILIES = (model, pilot, bench, tabular, explain, text, train, serve)


def build_parser() -> argparse.ArgumentParser:
    """The ``attnmoe`` parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="attnmoe",
        description="Bidirectional attention as a mixture of continuous word experts.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in COMMAND_FAMILIES:
        family.register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line for the user, without the library's source line."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (pandas' parser errors end in a newline)."""
    return " ".join(str(err).split("\n")).strip() or type(err).__name__


def _out_of_memory(err: Exception) -> bool:
    """Whether memory ran out; torch says so with a RuntimeError, not a MemoryError."""
    message = str(err)
    return isinstance(err, MemoryError) or any(s in message for s in _NO_MEMORY)


#: how torch's allocators say a tensor does not fit (CPU; CUDA's OutOfMemoryError)
_NO_MEMORY = ("can't allocate memory", "out of memory")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``attnmoe`` on ``argv`` (default ``sys.argv[1:]``) and return the exit status.

    Bad input or files (``ValueError``, ``OSError``) and sizes too large to
    allocate print one ``error:`` line and return 2; a diverged training
    (``FloatingPointError``) returns 1; an interrupt 130.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = list(sys.argv[1:] if argv is None else argv)  # for reports
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    with warnings.catch_warnings():  # restores the caller's warning display on return
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except (ValueError, OSError) as err:  # bad input or files: one line, no traceback
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 2
        except (MemoryError, RuntimeError) as err:  # e.g. --d-model 10**12
            if not _out_of_memory(err):
                raise
            print(
                f"error: not enough memory for the sizes asked: {_one_line(err)}", file=sys.stderr
            )
            return 2
        except FloatingPointError as err:  # training diverged (e.g. too large a --lr)
            print(f"error: {_one_line(err)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # what finished is on disk (benchmarks: rerun to resume)
            print("interrupted", file=sys.stderr)
            return 130


__all__ = ["build_parser", "main"]
