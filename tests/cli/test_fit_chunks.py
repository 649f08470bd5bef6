"""``attnmoe fit`` on files read in chunks: ``--chunk-rows``, Parquet, large files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.cli import main, table_chunks
from attnmoe.tabular import AttentionMoEClassifier


def _frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.integers(0, 5, n),
            "c": rng.choice(list("xyz"), n),
            "zip": rng.choice([2139, 10001], n),
            "id": np.arange(n),
        }
    )
    frame["y"] = np.where(frame["b"] > 2, "007", "12")  # labels pandas would re-spell
    frame.loc[5, "y"] = None
    return frame


def _fit(data, out, *extra) -> int:
    flags = ["--target", "y", "--drop", "id", "--categorical", "zip", "--max-steps", "20"]
    return main(["fit", str(data), "--out", str(out), *flags, *extra])


def _same_weights(a: AttentionMoEClassifier, b: AttentionMoEClassifier) -> bool:
    pairs = zip(a.models_[0].state_dict().values(), b.models_[0].state_dict().values(), strict=True)
    return all(torch.equal(p, q) for p, q in pairs)


def test_csv_in_chunks_gives_the_model_of_the_csv_read_whole(tmp_path, capsys):
    path = tmp_path / "t.csv"
    _frame().to_csv(path, index=False)
    assert _fit(path, tmp_path / "whole") == 0
    assert _fit(path, tmp_path / "chunks", "--chunk-rows", "90") == 0
    out = capsys.readouterr().out
    assert "read in chunks of 90 rows" in out
    assert "1 rows without a 'y' label are left out" in out
    assert "fitted on 399 rows, 4 columns (a, b, c, zip)" in out
    whole = AttentionMoEClassifier.from_pretrained(tmp_path / "whole")
    chunks = AttentionMoEClassifier.from_pretrained(tmp_path / "chunks")
    assert list(chunks.classes_) == list(whole.classes_) == ["007", "12"]  # as written
    assert chunks.encoder_.columns_[3].categories == [2139, 10001]
    assert _same_weights(whole, chunks)


def test_a_parquet_file_is_read_in_batches_and_gives_the_same_model(tmp_path, capsys):
    frame = _frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    assert _fit(tmp_path / "t.csv", tmp_path / "csv") == 0
    assert _fit(tmp_path / "t.parquet", tmp_path / "pq", "--chunk-rows", "128") == 0
    assert "t.parquet: read in chunks of 128 rows" in capsys.readouterr().out
    csv = AttentionMoEClassifier.from_pretrained(tmp_path / "csv")
    parquet = AttentionMoEClassifier.from_pretrained(tmp_path / "pq")
    assert list(parquet.classes_) == ["007", "12"]
    assert _same_weights(csv, parquet)


def test_a_large_file_is_read_in_chunks_without_the_flag(tmp_path, capsys, monkeypatch):
    path = tmp_path / "t.csv"
    _frame().to_csv(path, index=False)
    monkeypatch.setattr(table_chunks, "CHUNKED_BYTES", path.stat().st_size)
    assert _fit(path, tmp_path / "m") == 0
    assert f"read in chunks of {table_chunks.CHUNK_ROWS:,} rows" in capsys.readouterr().out
    monkeypatch.setattr(table_chunks, "CHUNKED_BYTES", path.stat().st_size + 1)
    assert _fit(path, tmp_path / "m") == 0
    assert "read in chunks" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--use-unlabeled"], "need the table in memory"),
        (["--chunk-rows", "0"], "--chunk-rows must be at least 1"),
        (["--drop", "nope"], "has no column(s) ['nope']"),
    ],
)
def test_what_chunks_cannot_do_is_one_error_line(tmp_path, capsys, extra, message):
    path = tmp_path / "t.csv"
    _frame().to_csv(path, index=False)
    argv = ["fit", str(path), "--target", "y", "--out", str(tmp_path / "m")]
    extra = extra if "--chunk-rows" in extra else [*extra, "--chunk-rows", "50"]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_a_column_of_numbers_then_text_names_itself_in_one_line(tmp_path, capsys):
    path = tmp_path / "t.csv"
    frame = _frame()
    frame["a"] = frame["a"].astype(object)
    frame.loc[300, "a"] = "n/a?"
    frame.to_csv(path, index=False)
    argv = ["fit", str(path), "--target", "y", "--out", str(tmp_path / "m"), "--chunk-rows", "100"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()  # after the progress bar's frames
    assert "Traceback" not in "".join(err)
    assert err[-1].startswith("error: column 'a' reads as numbers")


def test_one_label_or_none_is_refused_before_training(tmp_path, capsys):
    frame = _frame().assign(y="u")
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    argv = ["fit", str(tmp_path / "t.parquet"), "--target", "y", "--out", str(tmp_path / "m")]
    assert main(argv) == 2
    assert "has one value only" in capsys.readouterr().err
    frame.assign(y=None).to_csv(tmp_path / "t.csv", index=False)
    argv[1] = str(tmp_path / "t.csv")
    assert main([*argv, "--chunk-rows", "50"]) == 2
    assert "has no labels" in capsys.readouterr().err


def test_an_empty_column_read_in_chunks_is_said(tmp_path, capsys):
    path = tmp_path / "t.csv"
    _frame().assign(e=np.nan).to_csv(path, index=False)
    assert _fit(path, tmp_path / "m", "--chunk-rows", "100") == 0
    assert "column 'e' is empty" in capsys.readouterr().err


def test_chunks_train_on_the_data_parallel_trainer_too(tmp_path):
    path = tmp_path / "t.csv"
    _frame().to_csv(path, index=False)
    for name, extra in (("whole", []), ("chunks", ["--chunk-rows", "150"])):
        ckpt = ["--checkpoint-dir", str(tmp_path / f"ckpt_{name}")]
        assert _fit(path, tmp_path / name, *ckpt, *extra) == 0
    whole = AttentionMoEClassifier.from_pretrained(tmp_path / "whole")
    chunks = AttentionMoEClassifier.from_pretrained(tmp_path / "chunks")
    assert _same_weights(whole, chunks)
