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
