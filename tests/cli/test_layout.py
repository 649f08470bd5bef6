"""The command line's layout: every command answers ``--help``; argparse lives in attnmoe.cli."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

import attnmoe
from attnmoe.cli import build_parser, main

PACKAGE = Path(attnmoe.__file__).parent


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple]:
    """Every sub-command path under ``parser``, e.g. ``("bench", "cost")``, nested ones too."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += _commands(sub, (*prefix, name))
    return found


COMMANDS = _commands(build_parser())


def test_the_command_list_is_complete():
    names = {" ".join(c) for c in COMMANDS}
    expected = {
        "version", "convert", "check-equivalence", "demo", "bench", "bench tabular",
        "bench real", "bench cost", "fit", "predict", "impute", "report", "report-sentence",
        "experts-hf", "train-text", "analogy", "train-ddp", "serve", "log-labels",
        "monitor", "pilot",
    }  # fmt: skip
    assert names == expected


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "attnmoe")
def test_every_command_answers_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: attnmoe" in capsys.readouterr().out


def _defines_a_parser(tree: ast.AST) -> list[str]:
    """What in a module's syntax tree builds argparse options: imports and parser calls."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
            found.append(f"line {node.lineno}: import argparse")
        elif isinstance(node, ast.ImportFrom) and node.module == "argparse":
            found.append(f"line {node.lineno}: from argparse import")
        elif isinstance(node, ast.Attribute) and node.attr in (
            "ArgumentParser",
            "add_argument",
            "add_parser",
            "add_subparsers",
        ):
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_no_module_outside_attnmoe_cli_defines_a_parser():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "cli":
            continue
        found = _defines_a_parser(ast.parse(path.read_text(encoding="utf-8")))
        if found:
            offenders[str(relative)] = found
    assert offenders == {}


def _imports_the_cli(path: Path) -> bool:
    """Whether the module at ``path`` imports attnmoe.cli (absolute or relative, any depth)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        if any(n == "attnmoe.cli" or n.startswith("attnmoe.cli.") for n in names):
            return True
    return False


def test_the_library_never_imports_the_cli():
    library = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "cli"]
    assert [str(p.relative_to(PACKAGE)) for p in library if _imports_the_cli(p)] == []
    # the check sees relative imports: cli/bench.py imports attnmoe.cli.options as ".options"
    assert _imports_the_cli(PACKAGE / "cli" / "bench.py")


def test_the_scan_finds_a_parser():
    planted = "import argparse\n\ndef register(sub):\n    sub.add_parser('x').add_argument('--y')\n"
    assert len(_defines_a_parser(ast.parse(planted))) == 3
