"""Labels matched to classes however they were read; columns coded to categories and bins."""

import warnings

import numpy as np
import pandas as pd
import pytest

from attnmoe.tabular.encoding import TableEncoder, label_indices


def test_label_indices_match_by_value_then_by_text():
    classes = np.array([0, 1, 2])
    labels = [1, 1.0, np.int64(2), "0", 2.0, 7, None, np.nan, "x"]
    np.testing.assert_array_equal(label_indices(classes, labels), [1, 1, 2, 0, 2, -1, -1, -1, -1])
    # a model fitted on text labels, scored against a column read as numbers
    text = np.array(["1", "2", "a"], dtype=object)
    got = label_indices(text, pd.Series([1.0, 2, "a", np.nan, 3]))
    np.testing.assert_array_equal(got, [0, 1, 2, -1, -1])
    assert label_indices(classes, []).shape == (0,)


def test_label_indices_numbers_spelt_differently():
    # classes saved as text from floats, float32 classes, and numbers read as text
    np.testing.assert_array_equal(
        label_indices(np.array(["0.0", "1.0"]), [1.0, np.float64(0.0), "1", "x"]), [1, 0, 1, -1]
    )
    np.testing.assert_array_equal(
        label_indices(np.array([0.1, 0.2], dtype=np.float32), [0.1, "0.2", 0.3]), [0, 1, -1]
    )
    np.testing.assert_array_equal(label_indices(np.array([0, 1, 2]), ["1.0", 2.0, "0"]), [1, 2, 0])
    np.testing.assert_array_equal(label_indices(np.array([0.0, 1.0]), ["1", 1]), [1, 1])
    dates = np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[ns]")
    got = label_indices(dates, [1577836800000000000, pd.Timestamp("2020-01-01")])
    np.testing.assert_array_equal(got, [-1, 0])  # an integer is not a date
    big = np.array([10**17, 10**17 + 1])  # ids beyond float precision stay apart
    np.testing.assert_array_equal(label_indices(big, ["100000000000000001", 10**17]), [1, 0])
    missing = [pd.NA, None, np.nan, pd.NaT, "b"]
    np.testing.assert_array_equal(label_indices(np.array(["a", "b"]), missing), [-1] * 4 + [1])


def test_categories_match_a_column_read_with_other_types():
    # fitted on text ('1', '2', 'A'), encoded from a CSV where pandas read numbers
    encoder = TableEncoder().fit(pd.DataFrame({"g": ["1", "2", "A"], "n": [0, 1, 2]}))
    new = pd.DataFrame({"g": [1, 2], "n": ["1", "?"]})  # a stray '?' made n text
    with pytest.warns(UserWarning, match="0 missing and 1 unseen"):
        codes = encoder.encode(new, mask_id=9)
    np.testing.assert_array_equal(codes, [[0, 1], [1, 9]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same values, typed as at fit: nothing masked
        assert (encoder.encode(pd.DataFrame({"g": ["2"], "n": [2]}), 9) == [[1, 2]]).all()


@pytest.mark.parametrize(
    "values",
    [
        np.where(np.arange(300) % 2 == 0, 0.0, np.linspace(0.01, 9.0, 300)),  # half at the minimum
        np.r_[np.full(10, 0.5), np.full(10, 10.5)],  # quantiles fall in the gap between
        np.full(40, 3.5),
        np.random.default_rng(0).normal(size=1000),
    ],
    ids=["ties-at-minimum", "gap", "constant", "normal"],
)
def test_no_bin_is_empty(values):
    encoder = TableEncoder(n_bins=10, numeric="bins").fit(pd.DataFrame({"x": values}))
    coding = encoder.columns_[0]
    assert coding.kind == "binned"
    codes = encoder.encode(pd.DataFrame({"x": values}), mask_id=99)[:, 0]
    assert (np.bincount(codes, minlength=coding.n_codes) > 0).all()  # every code has rows
    assert np.isfinite(coding.representatives).all()
    assert coding.n_codes <= 10


@pytest.mark.parametrize("option", [{"n_bins": 0}, {"n_bins": -1}, {"max_categories": -1}])
def test_encoder_refuses_bad_sizes(option):
    with pytest.raises(ValueError, match="must be an integer"):
        TableEncoder(**option).fit(pd.DataFrame({"x": [0.5, 1.5]}))


def test_booleans_match_however_they_were_written():
    np.testing.assert_array_equal(
        label_indices(np.array(["false", "true"]), [True, False, "TRUE", "False", "yes"]),
        [1, 0, 1, 0, -1],
    )
    np.testing.assert_array_equal(label_indices(np.array([False, True]), ["true", "FALSE"]), [1, 0])


def test_a_text_shared_by_two_categories_goes_by_spelling():
    # "01" and "1" both read as the number 1: the one spelt as the value wins
    encoder = TableEncoder().fit(pd.DataFrame({"c": ["01", "1", "a"] * 5}))
    codes = encoder.encode(pd.DataFrame({"c": [1, 1.0, "1", "01"]}), 99, warn=False)
    np.testing.assert_array_equal(codes.ravel(), [1, 1, 1, 0])
    np.testing.assert_array_equal(
        label_indices(np.array(["007", "7", "8"]), [7, 8, "007"]), [1, 2, 0]
    )
    # True and 1 are told apart per distinct value, as a dict lookup would
    assert (encoder.encode(pd.DataFrame({"c": ["a"] * 3}), 99, warn=False) == 2).all()


def test_imputer_feature_names_out_follow_sklearn():
    """get_feature_names_out(names) validates the names against the fitted ones, and
    uses the names given when the imputer was fitted on an unnamed array."""
    from attnmoe.tabular import AttentionMoEImputer

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.integers(0, 3, 40), "b": rng.integers(0, 2, 40)})
    named = AttentionMoEImputer(epochs=1, random_state=0).fit(frame)
    assert list(named.get_feature_names_out()) == ["a", "b"]
    assert list(named.get_feature_names_out(["a", "b"])) == ["a", "b"]
    with pytest.raises(ValueError, match="feature_names_in_"):
        named.get_feature_names_out(["x", "y"])
    unnamed = AttentionMoEImputer(epochs=1, random_state=0).fit(frame.to_numpy())
    assert list(unnamed.get_feature_names_out()) == ["x0", "x1"]
    assert list(unnamed.get_feature_names_out(["p", "q"])) == ["p", "q"]
    with pytest.raises(ValueError, match="2"):
        unnamed.get_feature_names_out(["p"])
