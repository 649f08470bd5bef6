"""The partial-rows example of docs/tabular.md runs as written and says what it shows."""

import contextlib
import io
import re
import warnings
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "tabular.md"


def test_partial_rows_example_runs_and_shows_the_gain():
    section = DOC.read_text().split("## Rows with gaps", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the missing cells, counted
        exec(compile(block, str(DOC), "exec"), {})
    scores = dict(line.split() for line in out.getvalue().splitlines())
    assert set(scores) == {"0.0", "0.3"}
    plain, partial = float(scores["0.0"]), float(scores["0.3"])
    assert partial > 0.85  # b alone allows 0.9
    assert partial > plain + 0.1
    # the doc's comments quote the printed numbers (to the float rounding of another CPU)
    quoted = dict(re.findall(r"^# (0\.\d) (0\.\d+)", block, re.M))
    assert quoted.keys() == scores.keys()
    for rate, value in quoted.items():
        assert abs(float(value) - float(scores[rate])) < 0.02, rate


def test_unlabeled_rows_example_runs():
    section = DOC.read_text().split("## Rows without labels", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "X_unlabeled=cars.X_test" in block
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(DOC), "exec"), {})
    printed = out.getvalue().strip()
    assert printed.startswith("[") and len(printed.strip("[]").split()) == 5  # five labels
