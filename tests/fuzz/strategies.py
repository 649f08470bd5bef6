"""Hypothesis strategies: CSV files as a user might have them, written to disk."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

ODD_NAMES = [
    "",
    " ",
    " padded ",
    "a b",
    "é",
    "名前",
    '"quoted"',
    "it's",
    "<script>alert(1)</script>",
    "a,b",
    "x;y",
    "p|q",
    "prediction",
    "0",
    "nan",
]
GAPS = ["", "NA", "null", "nan", "N/A"]

ints = st.one_of(
    st.integers(-1000, 1000), st.integers(-(10**22), 10**22), st.sampled_from(["007", "+3"])
).map(str)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: f"{v:.3f}"),
    st.sampled_from(["inf", "-inf", "NaN", "1e308", "-0.0", "1,5"]),
)
texts = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10),
    st.sampled_from(["red", "green", "blue", 'say "hi"', "a;b", "tab\there", "line\nbreak"]),
)
booleans = st.sampled_from(["true", "false", "True", "FALSE", "1", "0", "yes"])
dates = st.dates().map(lambda d: d.isoformat())
#: one cell of a column of each kind; a gap in any of them
KINDS = {"int": ints, "float": floats, "text": texts, "bool": booleans, "date": dates}
HUGE = "h" * 200_000


def cells(kind: str) -> st.SearchStrategy[str]:
    return st.one_of(KINDS[kind], st.sampled_from(GAPS)) if kind else st.sampled_from(GAPS)


@dataclass
class CsvFile:
    """A CSV as written: its header, rows, delimiter and encoding."""

    header: list[str]
    rows: list[list[str]]
    sep: str
    encoding: str

    def write(self, path: Path) -> Path:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.sep, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        text = buffer.getvalue()
        encoding = "utf-8-sig" if self.encoding == "utf-8 BOM" else self.encoding
        path.write_bytes(text.encode(encoding, errors="replace"))
        return path


@st.composite
def csv_files(draw, required: dict[str, str] | None = None, max_rows: int = 6) -> CsvFile:
    """A CSV with random columns; ``required`` (name -> kind) columns are usually among them.

    Kinds, gaps, names (odd, repeated), delimiters, encodings, huge cells,
    ragged rows, header-only and one-row files are all drawn.
    """
    columns: list[tuple[str, str]] = []
    for name, kind in (required or {}).items():
        if draw(st.integers(0, 9)):  # now and then a required column is missing
            columns.append((name, draw(st.sampled_from([kind, kind, kind, *KINDS]))))
    n_extra = draw(st.integers(0 if columns else 1, 3))
    for _ in range(n_extra):
        name = draw(st.one_of(st.sampled_from(ODD_NAMES), st.text(max_size=6)))
        columns.append((name, draw(st.sampled_from(list(KINDS)))))
    if columns and draw(st.integers(0, 9)) == 0:
        columns.append(columns[0])  # a repeated name
    order = draw(st.permutations(range(len(columns))))
    columns = [columns[i] for i in order]
    n_rows = draw(st.sampled_from([0, 1, 1, max_rows, *range(2, max_rows + 1)]))
    rows = [[draw(cells(kind)) for _, kind in columns] for _ in range(n_rows)]
    if rows and draw(st.integers(0, 9)) == 0:
        rows[draw(st.integers(0, len(rows) - 1))][0] = HUGE
    if rows and draw(st.integers(0, 14)) == 0:
        rows[-1].append("extra")  # a ragged row
    return CsvFile(
        header=[name for name, _ in columns],
        rows=rows,
        sep=draw(st.sampled_from([",", ",", ";", "\t", "|"])),
        encoding=draw(st.sampled_from(["utf-8", "utf-8", "utf-8 BOM", "latin-1"])),
    )
