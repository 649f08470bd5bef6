"""Labels matched to a model's classes however they were read."""

import numpy as np
import pandas as pd

from attnmoe.tabular.encoding import label_indices


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
