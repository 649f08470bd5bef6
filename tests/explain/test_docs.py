"""The runnable example of docs/explain.md runs as written."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "explain.md"


def test_explain_doc_example_runs(tmp_path, monkeypatch):
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)  # it writes usage.parquet, mpg-model/, *.csv
    exec(compile(block, str(DOC), "exec"), {})
    assert (tmp_path / "usage.parquet").is_file()
    assert (tmp_path / "mpg-model" / "classifier.json").is_file()
