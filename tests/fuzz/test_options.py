"""Random option values through ``main()``: out of range, wrong types, missing, clashing paths.

Each example starts from a command line that works and changes one to three of
its options (or drops an argument, or adds an unknown one). Options that only
set how much work is done (``--epochs``, ``--bootstrap``) are drawn without
huge values so that every example stays short.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnmoe.model import load_model
from attnmoe.tabular import AttentionMoEClassifier

from . import checks
from .conftest import TINY
from .harness import check_and_record, fuzz_settings, run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SIZES = ["-1", "0", "1", "2", "3", "-100", "10000000000000", "99999999999999999999999", "x"]
SIZES += ["1.5", "nan", "", "1e3"]
SMALL = ["-1", "0", "1", "2", "x", "1.5", ""]  # work counts: never huge
FLOATS = ["-1", "0", "0.5", "1", "2", "nan", "inf", "-inf", "1e308", "x", ""]
NAMES = ["", " ", "x", "label", "colour", "size", "prediction", "p_yes", ",", ";;", "\t", "名"]
CHOICES = ["pure", "bert", "BERT", "x", "", "windows", "sentences", "regex", "hf:/nonexistent"]
#: path placeholders, filled per example: inputs, the model, a fresh name, ...
PATHS = ["{data}", "{model}", "{model}/classifier.json", "{tmp}", "{missing}", "{fresh}", ""]

#: per command: its working command line (placeholders) and its fuzzable options
COMMANDS = {
    "fit": (
        ["fit", "{data}", "--target", "label", "--out", "{fresh}", "--params", "{params}"],
        {"--target": NAMES, "--out": PATHS, "--drop": NAMES, "--random-state": SIZES,
         "--sep": NAMES, "--params": ["{}", "[]", "null", '{"epochs": -1}', '{"n_bins": 0}',
                                      '{"epochs": "x"}', '{"d_model": 0}', "{", '{"nope": 1}',
                                      '{"block": "x"}', '{"n_ensembles": 0}']},
    ),
    "predict": (
        ["predict", "{model}", "{data}", "--out", "{fresh}"],
        {"--out": PATHS, "--column": NAMES, "--sep": NAMES, "model": PATHS, "data": PATHS},
    ),
    "impute": (
        ["impute", "{data}", "--out", "{fresh}", "--params", "{params}"],
        {"--out": PATHS, "--keep": NAMES, "--random-state": SIZES, "data": PATHS},
    ),
    "report": (
        ["report", "{model}", "{data}", "--out", "{fresh}", "--bootstrap", "5", "--rows", "2"],
        {"--out": PATHS, "--target": NAMES, "--group": NAMES, "--rows": SIZES,
         "--bootstrap": SMALL, "--random-state": SIZES, "--shift-data": PATHS, "model": PATHS},
    ),
    "convert": (
        ["convert", "{attention}", "{fresh}"],
        {"source": [*PATHS, "{attention}"], "destination": [*PATHS, "{attention}"]},
    ),
    "train-text": (
        ["train-text", "{text}", "--out", "{fresh}", "--length", "4", "--epochs", "1",
         "--d-model", "8", "--min-count", "1", "--quiet"],
        {"--length": SIZES, "--n-layers": SIZES, "--n-heads": SIZES, "--d-model": SIZES,
         "--window": SIZES, "--epochs": SMALL, "--batch-size": SIZES, "--lr": FLOATS,
         "--min-count": SIZES, "--max-vocab": SIZES, "--validation": FLOATS,
         "--patience": SMALL, "--stride": SIZES, "--max-windows": SIZES, "--block": CHOICES,
         "--mode": CHOICES, "--tokenizer": CHOICES, "--num-threads": SMALL,
         "--device": ["cpu", "cuda", "x", ""], "--out": PATHS, "text": PATHS},
    ),
}  # fmt: skip
#: positional arguments, by their place in the working command line
POSITIONAL = {
    "model": 1,
    "data": 2,
    "source": 1,
    "destination": 2,
    "text": 1,
}


@pytest.fixture(scope="session")
def text_file(fuzz_dir) -> Path:
    rng = random.Random(0)
    words = ["the", "cat", "dog", "sat", "on", "mat", "a", "ran", "big", "small"]
    lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(40)]
    path = fuzz_dir / "text.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@st.composite
def command_lines(draw) -> tuple[str, list[str]]:
    """A command and its command line, one to three options changed (placeholders kept)."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    argv, options = COMMANDS[command]
    argv = list(argv)
    for name in draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3)):
        value = draw(st.sampled_from(options[name]))
        if name in POSITIONAL:
            argv[POSITIONAL[name] if command != "predict" or name != "data" else 2] = value
        elif name in argv:
            argv[argv.index(name) + 1] = value
        else:
            argv += [name, value]
    what = draw(st.integers(0, 9))
    if what == 0:  # an argument missing
        del argv[draw(st.integers(1, len(argv) - 1))]
    elif what == 1:
        argv.append(draw(st.sampled_from(["--nope", "--out", "extra"])))
    return command, argv


def _check_result(command: str, argv: list[str], classifier) -> None:
    """What a successful run wrote is right."""
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
    if command == "predict":
        sep = argv[argv.index("--sep") + 1] if "--sep" in argv else None
        column = argv[argv.index("--column") + 1] if "--column" in argv else "prediction"
        checks.check_predictions(out, Path(argv[2]), sep, classifier[0], column, False)
    elif command == "fit":
        assert AttentionMoEClassifier.from_pretrained(out).classes_.size >= 2
    elif command == "impute":
        sep = argv[argv.index("--sep") + 1] if "--sep" in argv else None
        keep = [argv[argv.index("--keep") + 1]] if "--keep" in argv else []
        checks.check_imputed(out, Path(argv[1]), sep, keep)
    elif command == "report":
        checks.check_report(out)
    elif command == "convert":
        load_model(argv[2])
    elif command == "train-text":
        load_model(out / "attention")


def _fill(arg: str, places: dict) -> str:
    for key, value in places.items():
        arg = arg.replace(f"{{{key}}}", str(value))
    return arg


def _inputs(command: str, template: list[str], places: dict) -> list[Path]:
    """The files the command line reads (named anywhere but as its output)."""
    outputs = {i + 1 for i, a in enumerate(template) if a == "--out"}
    outputs |= {2} if command == "convert" else set()
    named = [a for i, a in enumerate(template) if i not in outputs]
    keys = ("data", "model", "attention", "text")
    return [places[k] for k in keys if any(f"{{{k}}}" in a for a in named)]


@fuzz_settings(400)
@given(line=command_lines())
def test_random_options(classifier, attention, text_file, line):
    command, template = line
    clf, model, csv = classifier
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # copies: a command line may name them as its output
        places = {
            "data": shutil.copy(csv, tmp / "data.csv"),
            "model": shutil.copytree(model, tmp / "model"),
            "attention": shutil.copytree(attention[1], tmp / "attention"),
            "text": shutil.copy(text_file, tmp / "text.txt"),
            "tmp": tmp,
            "missing": tmp / "missing" / "nothing.csv",
            "fresh": tmp / "fresh" / "out",
            "params": json.dumps(TINY),
        }
        argv = [_fill(a, places) for a in template]
        outcome = run_cli(argv, _inputs(command, template, places))
        verify = lambda: _check_result(command, argv, (clf, model))  # noqa: E731
        check_and_record(f"options: {command}", outcome, verify)
