"""One name per knob: a command's flags are the parameters of the function it calls, and
docs/knobs.md names only parameters and flags that exist."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from attnmoe import AttentionConfig
from attnmoe.bench.cost import plan_cost_runs
from attnmoe.cli import build_parser
from attnmoe.explain.report import report_data
from attnmoe.model.equivalence import check_equivalence
from attnmoe.tabular import AttentionMoEClassifier, AttentionMoEImputer
from attnmoe.text.train import train_text
from attnmoe.training import train_mlm
from attnmoe.training.distributed import train_mlm_distributed

KNOBS_DOC = Path(__file__).resolve().parents[1] / "docs" / "knobs.md"
CONFIG = {f.name for f in dataclasses.fields(AttentionConfig)}


def _subparser(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """The ``dest`` of every optional flag (``--help`` left out)."""
    return {a.dest for a in parser._actions if a.option_strings and a.dest != "help"}


def _parameters(*functions) -> set[str]:
    return {name for f in functions for name in inspect.signature(f).parameters}


# what a command reads itself (files, output, the inverse of verbose) rather than passing on
CASES = [
    (("train-text",), _parameters(train_text), {"quiet"}),
    (
        ("train-ddp",),
        _parameters(train_mlm_distributed) | CONFIG,
        {"tokens", "synthetic_tokens", "window", "init", "out", "quiet"},
    ),
    (("check-equivalence",), _parameters(check_equivalence), {"tol"}),
    (("bench", "cost"), _parameters(plan_cost_runs), {"jobs", "out", "quick"}),
    (
        ("fit",),
        set(AttentionMoEClassifier().get_params()),
        {"target", "out", "drop", "use_unlabeled", "unlabeled", "categorical", "params", "sep",
         "chunk_rows"},
    ),
    (("impute",), set(AttentionMoEImputer().get_params()), {"out", "keep", "params", "sep"}),
    # --rows and --bootstrap set n_explained and n_bootstrap (not training knobs; left as they are)
    (("report",), _parameters(report_data), {"out", "rows", "bootstrap", "sep"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "parameters", "own"), CASES, ids=[" ".join(c[0]) for c in CASES]
)
def test_a_flag_is_the_dashed_name_of_the_parameter_it_sets(command, parameters, own):
    options = _options(_subparser(*command))
    assert options - own <= parameters, sorted(options - own - parameters)


def _table() -> list[list[str]]:
    lines = KNOBS_DOC.read_text(encoding="utf-8").splitlines()
    rows = [r for r in lines if r.startswith("| ") and not r.startswith("| knob")]
    return [[cell.strip() for cell in r.strip("|").split("|")] for r in rows]


def _names(cell: str) -> set[str]:
    """Identifiers in backticks (quoted values such as ``"copies"`` left out)."""
    return {n for n in re.findall(r"`([A-Za-z_][\w.]*)`", cell) if "." not in n}


def test_the_knob_table_names_existing_parameters_and_flags():
    rows = _table()
    assert len(rows) > 20
    estimator = set(AttentionMoEClassifier().get_params()) | set(AttentionMoEImputer().get_params())
    low_level = _parameters(train_mlm, train_mlm_distributed, train_text) | CONFIG
    flags = {
        flag
        for command in [(), *[c for c, _, _ in CASES], ("demo",), ("bench", "tabular")]
        for action in _subparser(*command)._actions
        for flag in action.option_strings
    }
    for knob, in_estimator, in_training, in_cli, _ in rows:
        assert _names(in_estimator) <= estimator, knob
        assert _names(in_training) - {"train_mlm", "train_mlm_distributed", "train_text",
                                      "AttentionConfig"} <= low_level, knob  # fmt: skip
        assert set(re.findall(r"--[a-z][a-z-]*", in_cli)) <= flags, knob
