"""Three pilots on data that ships with the package: the demo's and the docs' examples.

- ``auto-mpg``: fuel economy (three equal-frequency classes) of US cars, then of
  European and Japanese ones (by region: ``--split-by origin``);
- ``penguins``: the species of Palmer penguins measured 2007-2008, then in 2009
  (by period: ``--time year``);
- ``wages``: union membership of US workers (1982) outside the South, then in the
  South (by region: ``--split-by south``).

Each is a raw table, written as a CSV, and the options of ``attnmoe pilot``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..bench.datasets import _auto_mpg_frame
from ..bench.real_tables import _r_table

__all__ = ["EXAMPLES", "Example", "write_example"]


def _auto_mpg() -> pd.DataFrame:
    frame = _auto_mpg_frame()
    classes = pd.qcut(frame["mpg"], 3, labels=["low", "medium", "high"])  # the paper's bins
    return frame.drop(columns="mpg").assign(mpg_class=classes.astype(str))


def _penguins() -> pd.DataFrame:
    import palmerpenguins

    return palmerpenguins.load_penguins()


def _wages() -> pd.DataFrame:
    raw = _r_table("Ecdat", "Wages")
    return raw.iloc[6::7].reset_index(drop=True)  # the last wave (1982): one row per person


@dataclass(frozen=True)
class Example:
    """A shipped table and the ``attnmoe pilot`` options of its pilot."""

    load: Callable[[], pd.DataFrame]
    options: tuple[str, ...]
    words: str


EXAMPLES: dict[str, Example] = {
    "auto-mpg": Example(
        _auto_mpg,
        ("--target", "mpg_class", "--split-by", "origin", "--train", "USA", "--group", "origin"),
        "fuel economy class; train on US cars, new rows: European and Japanese cars",
    ),
    "penguins": Example(
        _penguins,
        ("--target", "species", "--time", "year", "--cutoff", "2009", "--group", "island"),
        "species; train on 2007-2008, new rows: 2009",
    ),
    "wages": Example(
        _wages,
        ("--target", "union", "--split-by", "south", "--train", "no", "--group", "sex"),
        "union contract (1982); train outside the South, new rows: the South",
    ),
}


def write_example(name: str, folder: str | Path) -> Path:
    """Write example ``name``'s table to ``folder/NAME.csv``; its path."""
    path = Path(folder) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    EXAMPLES[name].load().to_csv(path, index=False)
    return path
