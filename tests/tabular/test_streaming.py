"""Fitting from chunks of rows: the encoder in one pass, the classifier on compact codes."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.tabular import AttentionMoEClassifier, AttentionMoEImputer
from attnmoe.tabular.encoding import TableEncoder
from attnmoe.tabular.streaming import CodeTable, TargetMaskedRows, chunk_passes


def _table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "real": rng.normal(size=n),  # quantile knots
            "few": rng.integers(0, 5, n),  # whole numbers: a knot per value
            "many": rng.integers(0, 1000, n),  # whole, too many values: quantiles
            "text": rng.choice(["b", "a", "c"], n),
            "flag": rng.random(n) > 0.5,
            "dtype": pd.Categorical(rng.choice(["y", "x"], n), categories=["y", "x", "w"]),
            "gaps": np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 3, n)),
            "empty": np.full(n, np.nan),
        }
    )
    frame.loc[::7, "real"] = np.nan
    frame.loc[3, "real"] = np.inf
    frame.loc[::11, "text"] = None
    return frame


def _cut(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + size] for i in range(0, len(frame), size)]


def _assert_same_encoder(a: TableEncoder, b: TableEncoder) -> None:
    assert len(a.columns_) == len(b.columns_)
    for p, q in zip(a.columns_, b.columns_, strict=True):
        assert (p.name, p.kind) == (q.name, q.kind)
        assert [(type(v), v) for v in p.categories] == [(type(v), v) for v in q.categories]
        if p.kind == "numeric":
            assert p.knots.dtype == q.knots.dtype
            np.testing.assert_array_equal(p.knots, q.knots)


@pytest.mark.parametrize("size", [3000, 1000, 333, 1])
def test_encoder_from_chunks_equals_the_encoder_of_the_whole_table(size):
    frame = _table()
    whole = TableEncoder().fit(frame)
    _assert_same_encoder(TableEncoder().fit_chunks(_cut(frame, size)), whole)


def test_a_sampled_column_is_the_same_however_it_is_cut_and_keeps_its_range():
    frame = _table()[["real", "many"]]
    small = dict(sample_size=200, seed=3)
    a = TableEncoder().fit_chunks(_cut(frame, 1000), **small)
    b = TableEncoder().fit_chunks(_cut(frame, 77), **small)
    _assert_same_encoder(a, b)
    exact = TableEncoder().fit(frame)
    for sampled, whole, name in zip(a.columns_, exact.columns_, frame.columns, strict=True):
        values = frame[name][np.isfinite(frame[name])].to_numpy()
        assert set(sampled.knots) <= set(values)  # knots are values the column holds
        assert sampled.knots[0] == values.min() and sampled.knots[-1] == values.max()
        assert not np.array_equal(sampled.knots, whole.knots)  # sampled, not exact
        ranks = np.searchsorted(np.sort(values), sampled.knots) / len(values)
        np.testing.assert_allclose(ranks, np.linspace(0, 1, len(ranks)), atol=0.1)
    other_seed = TableEncoder().fit_chunks(_cut(frame, 1000), sample_size=200, seed=4)
    assert not np.array_equal(other_seed.columns_[0].knots, a.columns_[0].knots)


def test_categorical_chunks_of_different_categories_take_the_sorted_union():
    parts = [
        pd.DataFrame({"z": pd.Series([10001, 2139]).astype("category")}),
        pd.DataFrame({"z": pd.Series([501, 2139]).astype("category")}),
    ]
    encoder = TableEncoder().fit_chunks(parts)
    assert encoder.columns_[0].categories == [501, 2139, 10001]
    whole = pd.DataFrame({"z": pd.Series([10001, 2139, 501, 2139]).astype("category")})
    assert TableEncoder().fit(whole).columns_[0].categories == [501, 2139, 10001]


def test_a_column_of_numbers_in_one_chunk_and_text_in_another_is_refused():
    parts = [pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [None, None]}), {"a": ["x"]}]
    parts[2] = pd.DataFrame(parts[2])
    with pytest.raises(ValueError, match=r"column 'a' reads as numbers .* text in chunk 2"):
        TableEncoder().fit_chunks(parts)


def test_encoder_chunks_must_share_their_columns_and_exist():
    with pytest.raises(ValueError, match="chunk 1 has columns"):
        TableEncoder().fit_chunks([pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [1]})])
    with pytest.raises(ValueError, match="no chunks"):
        TableEncoder().fit_chunks([])
    with pytest.raises(ValueError, match="numeric='interpolate'"):
        TableEncoder(numeric="bins").fit_chunks([pd.DataFrame({"a": [1]})])


def _pairs(X: pd.DataFrame, y: np.ndarray, size: int) -> list[tuple]:
    return [(X.iloc[i : i + size], y[i : i + size]) for i in range(0, len(X), size)]


def _assert_same_model(a: AttentionMoEClassifier, b: AttentionMoEClassifier, X) -> None:
    _assert_same_encoder(a.encoder_, b.encoder_)
    assert a.classes_.dtype == b.classes_.dtype and list(a.classes_) == list(b.classes_)
    assert a.mask_id_ == b.mask_id_
    assert list(a.feature_names_in_) == list(b.feature_names_in_)
    assert len(a.models_) == len(b.models_)
    for one, other in zip(a.models_, b.models_, strict=True):
        for p, q in zip(one.state_dict().values(), other.state_dict().values(), strict=True):
            assert torch.equal(p, q)
    assert a.gate_baseline_ == b.gate_baseline_
    with pytest.warns(UserWarning):  # the gaps are masked
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize("params", [{}, {"independent_rows": 0.5, "n_ensembles": 2}])
def test_classifier_from_chunks_equals_the_classifier_of_the_whole_table(params):
    X = _table(600).drop(columns=["empty"])
    y = np.where(X["few"].to_numpy() > 2, "hi", "lo")
    settings = {"epochs": 2, "random_state": 0, **params}
    whole = AttentionMoEClassifier(**settings).fit(X, y)
    chunked = AttentionMoEClassifier(**settings).fit_chunks(_pairs(X, y, 170))
    _assert_same_model(whole, chunked, X)


def test_fractional_codes_are_stored_as_float64_and_whole_ones_as_int16():
    table = CodeTable(4, 2, mask_id=11)
    table.append(np.array([[0, 1], [2, 3]]))
    assert table.array.dtype == np.int16
    table.append(np.array([[0.5, 1.0], [2.0, 11.0]]))
    assert table.result().dtype == np.float64
    np.testing.assert_array_equal(table.result(), [[0, 1], [2, 3], [0.5, 1], [2, 11]])
    assert CodeTable(1, 1, mask_id=40_000).array.dtype == np.int32


def test_target_masked_rows_read_as_the_in_memory_copy():
    tokens = np.arange(12, dtype=np.int16).reshape(4, 3)
    rows = TargetMaskedRows(tokens, 3, mask_id=99)
    assert len(rows) == 3 and rows.shape == (3, 3)
    part = rows[1:10]
    assert part.dtype == torch.int64
    np.testing.assert_array_equal(part.numpy(), [[3, 4, 99], [6, 7, 99]])
    assert tokens[1, 2] == 5  # the array itself is left as it was


def test_a_generator_is_refused_and_a_function_of_one_is_taken():
    X = pd.DataFrame({"a": list("xyxy") * 10})
    y = np.array(list("uvuv") * 10)
    once = (pair for pair in _pairs(X, y, 15))
    with pytest.raises(TypeError, match="read once"):
        AttentionMoEClassifier(epochs=1).fit_chunks(once)
    clf = AttentionMoEClassifier(epochs=1, random_state=0)
    clf.fit_chunks(lambda: iter(_pairs(X, y, 15)))
    assert list(clf.classes_) == ["u", "v"]
    with pytest.raises(TypeError, match="iterable of chunks"):
        chunk_passes(3)


def test_chunks_that_change_between_readings_are_refused():
    X = pd.DataFrame({"a": list("xyxy") * 10})
    y = np.array(list("uvuv") * 10)
    readings = iter([_pairs(X, y, 15), _pairs(X.iloc[:30], y[:30], 15)])
    with pytest.raises(ValueError, match="same rows each time"):
        AttentionMoEClassifier(epochs=1).fit_chunks(lambda: iter(next(readings)))


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_labels_of_chunks_are_checked_and_merged_as_fit_merges_them():
    X = pd.DataFrame({"a": list("xyxy") * 10})
    pairs = [(X.iloc[:20], [1] * 10 + [2] * 10), (X.iloc[20:], ["a"] * 20)]
    clf = AttentionMoEClassifier(epochs=1, random_state=0).fit_chunks(pairs)
    whole = AttentionMoEClassifier(epochs=1, random_state=0).fit(
        X, [1] * 10 + [2] * 10 + ["a"] * 20
    )
    assert list(clf.classes_) == list(whole.classes_) == [1, 2, "a"]
    with pytest.raises(ValueError, match="chunk 1: y contains missing labels"):
        AttentionMoEClassifier(epochs=1).fit_chunks(
            [(X.iloc[:20], ["u"] * 20), (X.iloc[20:], [None] * 20)]
        )
    with pytest.raises(ValueError, match="chunk 0: X has 20 rows but y has 3"):
        AttentionMoEClassifier(epochs=1).fit_chunks([(X.iloc[:20], ["u", "v", "u"])])
    with pytest.raises(ValueError, match="expecting 1 features"):  # the columns of chunk 0
        AttentionMoEClassifier(epochs=1).fit_chunks(
            [(X.iloc[:20], ["u", "v"] * 10), (X.iloc[20:].assign(b=1).to_numpy(), ["u"] * 20)]
        )


def test_the_chunks_example_of_docs_scale_runs_as_written(tmp_path, monkeypatch):
    doc = Path(__file__).resolve().parents[2] / "docs" / "scale.md"
    section = doc.read_text(encoding="utf-8").split("## 4c.", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "fit_chunks(chunks)" in block
    monkeypatch.chdir(tmp_path)  # the example writes big.csv where it runs
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(doc), "exec"), {})
    score = float(out.getvalue())
    quoted = float(re.search(r"# (0\.\d+)", block).group(1))
    assert score > 0.95 and abs(score - quoted) < 0.01  # the comment quotes the output


def test_imputer_from_chunks_equals_the_imputer_of_the_whole_table():
    X = _table(400).drop(columns=["empty", "flag"])
    whole = AttentionMoEImputer(epochs=2, random_state=0).fit(X)
    chunked = AttentionMoEImputer(epochs=2, random_state=0).fit_chunks(_cut(X, 150))
    _assert_same_encoder(whole.encoder_, chunked.encoder_)
    for p, q in zip(
        whole.models_[0].state_dict().values(),
        chunked.models_[0].state_dict().values(),
        strict=True,
    ):
        assert torch.equal(p, q)
    pd.testing.assert_frame_equal(whole.transform(X), chunked.transform(X))
    with pytest.raises(ValueError, match=r"columns \['empty'\] have no observed values"):
        AttentionMoEImputer(epochs=1).fit_chunks(_cut(_table(100)[["few", "empty"]], 50))


@pytest.mark.parametrize(("column", "dtype"), [("few", np.int16), ("real", np.float64)])
def test_the_models_train_on_the_compact_code_array(monkeypatch, column, dtype):
    seen = {}
    fit_models = AttentionMoEClassifier._fit_models

    def spy(self, tokens, vocab_size, weights):
        seen["dtype"] = tokens.dtype
        return fit_models(self, tokens, vocab_size, weights)

    monkeypatch.setattr(AttentionMoEClassifier, "_fit_models", spy)
    X = _table(200)[[column]]
    y = np.arange(200) % 2
    AttentionMoEClassifier(epochs=1, random_state=0).fit_chunks(_pairs(X, y, 64))
    assert seen["dtype"] == dtype  # whole codes of a small vocabulary: two bytes a cell
