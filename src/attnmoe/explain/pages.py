"""HTML pages from the package's Jinja templates (``explain/templates``).

Autoescaping is on for every template: a value becomes text on the page,
whatever it holds. Column names, labels, group values and command lines come
from the user and may look like markup; only the templates write tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import jinja2
import numpy as np
import pandas as pd


def percent(value: float | None) -> str:
    """``0.8125`` -> ``"81.2%"``; missing -> ``"n/a"``."""
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.1f}%"


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("attnmoe.explain", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name is an error, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format  # {{ x|fmt(".3f") }}
    env.filters["pct"] = percent
    env.filters["repr"] = repr
    return env


def render(template: str, **context: Any) -> str:
    """The template ``explain/templates/<template>`` filled with ``context``."""
    return _environment().get_template(template).render(**context)


@dataclass(frozen=True)
class Kpi:
    """A key number: ``id`` and ``value`` (unrounded) for machines, the rest for people."""

    id: str
    value: Any
    shown: str
    label: str
    hint: str = ""


@dataclass(frozen=True)
class Cell:
    """One table cell's text; numbers are right-aligned."""

    text: str
    numeric: bool = False


def _cell(value: Any, numeric_format: str) -> Cell:
    if isinstance(value, (float, np.floating)):
        return Cell(numeric_format.format(value), numeric=True)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return Cell(str(value), numeric=True)
    return Cell(str(value))


@dataclass(frozen=True)
class Table:
    """A plain table: its header and its rows of cells (the ``table`` macro draws it)."""

    columns: list[str]
    rows: list[list[Cell]]


def table(frame: pd.DataFrame, numeric_format: str = "{:.3f}") -> Table:
    """``frame`` (its index left out) as text cells; floats written with ``numeric_format``."""
    columns = [frame.iloc[:, j].tolist() for j in range(frame.shape[1])]
    rows = [[_cell(v, numeric_format) for v in row] for row in zip(*columns, strict=True)]
    return Table([str(c) for c in frame.columns], rows)
