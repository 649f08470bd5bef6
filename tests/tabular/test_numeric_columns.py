"""Numbers keep their order (issue 27, item 2): numeric columns as continuous word experts.

A numeric column's code is its value's position between the column's knots; a
value between two knots has a fractional code, one outside the training range
is clipped to the edge. Whole-number columns with few levels keep the codes they
had as categories, so the paper's frames (and every model fitted on them) are
unchanged; models saved before load and predict as they did.
"""

import base64
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnmoe.bench.datasets import load_auto_mpg, make_simulation
from attnmoe.model.io import ModelFileError
from attnmoe.tabular import AttentionMoEClassifier
from attnmoe.tabular.encoding import TableEncoder

DATA = Path(__file__).parent / "data"


def _paper_frames():
    return {
        "simulation": make_simulation(0, k=3, corr=0.5, x_noise=0.5),
        "auto_mpg": load_auto_mpg(),
    }


# ---------------------------------------------------------------------------
# the encoder


def test_whole_numbers_with_few_levels_keep_their_category_codes():
    train = pd.DataFrame({"n": [3, 1, 4, 1, 5, 9, 2, 6], "f": [3.0, 1, 4, 1, 5, 9, 2, 6]})
    encoder = TableEncoder().fit(train)
    assert [c.kind for c in encoder.columns_] == ["numeric", "numeric"]
    np.testing.assert_array_equal(encoder.columns_[0].knots, [1, 2, 3, 4, 5, 6, 9])
    codes = encoder.encode(train, mask_id=50)
    assert codes.dtype == np.int64
    before = TableEncoder(numeric="bins").fit(train)  # the coding before numeric columns
    assert [c.kind for c in before.columns_] == ["categorical", "categorical"]
    np.testing.assert_array_equal(codes, before.encode(train, mask_id=50))
    # a value between two seen ones: between their codes, no longer the mask token
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        between = encoder.encode(pd.DataFrame({"n": [7, 2], "f": [2.5, 3]}), mask_id=50)
    assert between.dtype == np.float64
    np.testing.assert_array_equal(between, [[6 - 2 / 3, 1.5], [1, 2]])


@pytest.mark.parametrize("name", ["simulation", "auto_mpg"])
def test_the_paper_frames_get_the_codes_they_had(name):
    split = _paper_frames()[name]
    encoder = TableEncoder().fit(split.X_train)
    before = TableEncoder(numeric="bins").fit(split.X_train)
    assert {c.kind for c in encoder.columns_} == {"numeric"}
    for frame in (split.X_train, split.X_test):
        codes = encoder.encode(frame, encoder.n_codes, warn=False)
        assert codes.dtype == np.int64
        np.testing.assert_array_equal(codes, before.encode(frame, before.n_codes, warn=False))


def test_floats_get_quantile_knots_and_interpolate_between_them():
    rng = np.random.default_rng(0)
    values = rng.normal(size=500)
    encoder = TableEncoder(n_bins=10).fit(pd.DataFrame({"x": values}))
    coding = encoder.columns_[0]
    assert coding.kind == "numeric" and coding.n_codes == 10
    assert np.isin(coding.knots, values).all()  # knots are values the column holds
    assert coding.knots[0] == values.min() and coding.knots[-1] == values.max()
    codes = encoder.encode(pd.DataFrame({"x": values}), mask_id=10)[:, 0]
    assert codes.dtype == np.float64 and codes.min() == 0 and codes.max() == 9
    # codes keep the values' order, and decoding gives each value back
    order = np.argsort(values)
    assert (np.diff(codes[order]) >= 0).all()
    np.testing.assert_allclose(encoder.decode(0, codes), values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(encoder.decode(0, np.arange(10)), coding.knots)


def test_out_of_range_values_are_clipped_and_counted_in_the_one_warning():
    encoder = TableEncoder().fit(pd.DataFrame({"x": [0.5, 1.5, 2.5, 3.5], "s": list("abab")}))
    new = pd.DataFrame(
        {"x": [-100.0, 100.0, np.nan, np.inf, 2.0, 1.5], "s": ["a", "b", "c", "a", None, "a"]}
    )
    with pytest.warns(UserWarning) as caught:
        codes = encoder.encode(new, mask_id=7)
    assert len(caught) == 1
    assert str(caught[0].message) == (
        "2 missing and 2 unseen values were replaced by the mask token; predictions still "
        "use the other columns; 2 numeric values outside the training range were clipped "
        "to its nearest edge"
    )
    np.testing.assert_array_equal(codes[:, 0], [0, 3, 7, 7, 1.5, 1])
    with pytest.warns(UserWarning, match=r"^1 numeric values outside the training range"):
        encoder.encode(pd.DataFrame({"x": [9.0], "s": ["a"]}), mask_id=7)


def test_a_fractional_code_never_reaches_the_last_code_or_the_mask_id():
    rng = np.random.default_rng(1)
    values = np.sort(rng.normal(size=2000) * 1e3)
    encoder = TableEncoder(n_bins=10).fit(pd.DataFrame({"x": values}))
    last = encoder.columns_[0].n_codes - 1
    # values a hair below each knot, and values clipped from beyond both edges
    probes = np.r_[np.nextafter(encoder.columns_[0].knots, -np.inf), -1e9, 1e9]
    codes = encoder.encode(pd.DataFrame({"x": probes}), mask_id=last + 1, warn=False)[:, 0]
    assert codes.min() >= 0 and codes.max() <= last
    fractional = codes[codes != np.floor(codes)]
    assert (np.floor(fractional) + 1 <= last).all()


def test_numbers_written_as_text_find_their_codes_and_empty_columns_mask():
    encoder = TableEncoder().fit(pd.DataFrame({"n": [0, 1, 2], "gap": [np.nan] * 3}))
    assert encoder.columns_[1].n_codes == 0
    with pytest.warns(UserWarning, match="1 missing and 3 unseen"):
        codes = encoder.encode(pd.DataFrame({"n": ["1", "?", "1.5"], "gap": [np.nan, 4.0, 1]}), 9)
    np.testing.assert_array_equal(codes, [[1, 9], [9, 9], [1.5, 9]])


def test_categoricals_booleans_and_text_stay_unordered():
    frame = pd.DataFrame(
        {
            "declared": pd.Categorical([3, 1, 2, 3]),  # numbers declared unordered
            "flag": [True, False, True, True],
            "word": ["b", "a", "c", "a"],
        }
    )
    encoder = TableEncoder().fit(frame)
    assert [c.kind for c in encoder.columns_] == ["categorical"] * 3
    with pytest.warns(UserWarning, match="0 missing and 1 unseen"):  # 2.5 is no category
        codes = encoder.encode(frame.assign(declared=[2.5, 1, 2, 3]), mask_id=9)
    assert codes.dtype == np.int64 and codes[0, 0] == 9


def test_bins_stay_available_for_counting_values():
    encoder = TableEncoder(numeric="bins").fit(pd.DataFrame({"x": np.linspace(0, 1, 50)}))
    assert encoder.columns_[0].kind == "binned" and encoder.columns_[0].n_codes == 10
    with pytest.raises(ValueError, match="numeric must be 'interpolate' or 'bins'"):
        TableEncoder(numeric="ranks").fit(pd.DataFrame({"x": [0.5]}))


# ---------------------------------------------------------------------------
# the classifier on the paper's frames: predictions as main's code gave them


@pytest.mark.parametrize("engine", ["auto", "torch"])
@pytest.mark.parametrize("name", ["simulation", "auto_mpg"])
def test_paper_frame_predictions_are_unchanged(name, engine):
    stored = json.loads((DATA / "paper_frames_predict_proba.json").read_text())
    expected = np.array(stored["predict_proba"][f"{name}/{engine}"], dtype=float)
    split = _paper_frames()[name]
    clf = AttentionMoEClassifier(epochs=3, n_ensembles=1, random_state=0, engine=engine)
    clf.fit(split.X_train.iloc[:300], split.y_train.iloc[:300])
    np.testing.assert_allclose(
        clf.predict_proba(split.X_test.iloc[:8]), expected, rtol=0, atol=1e-12
    )


# ---------------------------------------------------------------------------
# model files


def _write_old_folder(folder: Path) -> dict:
    """The classifier folder main's code wrote (kinds "binned" and "categorical")."""
    stored = json.loads((DATA / "classifier_saved_before_numeric_columns.json").read_text())
    for name, text in stored["files"].items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".safetensors"):
            path.write_bytes(base64.b64decode(text))
        else:
            path.write_text(text)
    return stored


def test_a_folder_saved_before_numeric_columns_predicts_as_it_did(tmp_path):
    stored = _write_old_folder(tmp_path / "old")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verified by its manifest: loads silently
        clf = AttentionMoEClassifier.from_pretrained(tmp_path / "old")
    assert [c.kind for c in clf.encoder_.columns_] == [
        "binned",
        "categorical",
        "binned",
        "categorical",
    ]
    rows = stored["rows"]
    frame = pd.DataFrame(rows["data"], columns=rows["columns"])
    # the old coding: out-of-range numbers fall in the edge bins, unseen whole numbers mask
    with pytest.warns(UserWarning, match="4 missing and 3 unseen") as caught:
        proba = clf.predict_proba(frame)
    assert "clipped" not in str(caught[0].message)
    expected = np.array(stored["predict_proba"], dtype=float)
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-12)


def test_an_old_folder_with_unsorted_bin_edges_is_refused(tmp_path):
    _write_old_folder(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "classifier.json").read_text())
    meta["encoder"]["columns"][0]["edges"].reverse()
    (tmp_path / "old" / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"'encoder\.columns\[0\]\.edges' must be increasing"):
        AttentionMoEClassifier.from_pretrained(tmp_path / "old")


# ---------------------------------------------------------------------------
# docs/tabular.md


def test_the_column_types_example_runs_and_prints_what_it_says():
    import contextlib
    import io
    import re

    doc = Path(__file__).resolve().parents[2] / "docs" / "tabular.md"
    section = doc.read_text().split("## How columns are typed", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.warns(UserWarning, match="2 numeric values"):
        exec(compile(block, str(doc), "exec"), {})
    printed = out.getvalue().splitlines()
    quoted = re.findall(r"print\(.*\)  # (?:.*: )?(\[.*\])$", block, re.M)
    assert printed == quoted


# ---------------------------------------------------------------------------
# the estimators pass fractional codes through

FAST = dict(epochs=3, batch_size=256, learning_rate=1e-2, n_ensembles=1, random_state=0)


def _numeric_table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).round(3)
    frame = pd.DataFrame({"x": x, "k": rng.integers(0, 4, n), "s": rng.choice(["a", "b"], n)})
    return frame, np.where(x > 0, "pos", "neg")


def test_unlabeled_rows_extend_the_knots_and_everything_takes_fractional_codes():
    X, y = _numeric_table()
    shifted = X.assign(x=X["x"] + 10)  # the rows to predict lie above the training range
    clf = AttentionMoEClassifier(**FAST, independent_rows=0.5).fit(X, y, X_unlabeled=shifted)
    assert clf.encoder_.columns_[0].knots[-1] == shifted["x"].max()  # knots learnt on both
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside the knots: nothing clipped
        tokens = clf.tokens(shifted)
        proba = clf.predict_proba(shifted)
    assert tokens.dtype.is_floating_point and (tokens != tokens.floor()).any()
    np.testing.assert_allclose(proba.sum(1), 1.0)
    # 3 epochs; unlabeled and independent rows have no target to predict
    assert clf.histories_[0].masked_predictions == 3 * (120 * 4 + (120 + 60) * 3)


def test_the_imputer_fills_a_numeric_cell_with_a_value_the_column_holds():
    from attnmoe.tabular import AttentionMoEImputer

    X, _ = _numeric_table()
    holes = X.copy()
    holes.loc[:9, "x"] = np.nan
    filled = AttentionMoEImputer(**FAST).fit_transform(holes)
    knots = TableEncoder().fit(holes).columns_[0].knots
    assert filled["x"].notna().all() and np.isin(filled.loc[:9, "x"], knots).all()
    assert set(np.unique(filled.loc[:9, "x"])) <= set(holes["x"].dropna())


def test_a_served_numeric_column_takes_numbers(tmp_path):
    pytest.importorskip("fastapi")
    from attnmoe.serve.predictor import Predictor, RowError

    X, y = _numeric_table()
    AttentionMoEClassifier(**FAST).fit(X, y).save_pretrained(tmp_path / "m")
    predictor = Predictor(tmp_path / "m")
    assert predictor.numeric == {"x", "k"}
    frame = predictor.frame([{"x": 99.5, "k": 1, "s": "a"}])
    assert frame.shape == (1, 3)
    with pytest.raises(RowError, match="expected a number or null"):
        predictor.frame([{"x": "high", "k": 1, "s": "a"}])
