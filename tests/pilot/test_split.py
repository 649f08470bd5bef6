"""The shift definitions and their one-line errors."""

from __future__ import annotations

import pandas as pd
import pytest

from attnmoe.pilot import make_split
from tests.pilot.conftest import small_table


@pytest.fixture
def table():
    return small_table()


def test_segments_train_on_the_given_values_and_score_the_others(table):
    split = make_split(table, "label", split_by="region", train=["north", "east"], drop=["day"])
    assert len(split.X_train) == table.region.isin(["north", "east"]).sum()
    assert len(split.X_test) == (table.region == "south").sum()
    assert "region" not in split.features  # one value on the new side: it teaches nothing
    assert split.notes == ["'region' left out of the features (one value on a side)"]
    # both sides share one categorical dtype; numbers are floats
    assert split.X_train["colour"].dtype == split.X_test["colour"].dtype
    assert split.X_train["size"].dtype == float


def test_segment_values_match_numbers_as_typed():
    table = pd.DataFrame({"year": [1, 1, 2, 2, 3, 3], "x": range(6), "y": list("ababab")})
    split = make_split(table, "y", split_by="year", train=["1", "2.0"])
    assert len(split.X_train) == 4 and len(split.X_test) == 2


def test_time_cutoff_reads_dates_and_numbers(table):
    split = make_split(table, "label", time="day", cutoff="2021-01-01")
    days = pd.to_datetime(table["day"])
    assert len(split.X_train) == (days < "2021-01-01").sum()
    assert len(split.X_test) == (days >= "2021-01-01").sum()
    assert "day" not in split.features  # a date is never a feature
    numbers = table.assign(t=range(len(table)))
    split = make_split(numbers, "label", time="t", cutoff="200", drop=["day"])
    assert (len(split.X_train), len(split.X_test)) == (200, len(table) - 200)


def test_a_second_file_holds_the_new_rows(table):
    split = make_split(table[:150], "label", new=table[150:], group="sex")
    assert (len(split.X_train), len(split.X_test)) == (150, len(table) - 150)
    assert list(split.group_test) == list(table["sex"][150:])


def test_rows_without_a_label_or_with_a_gap_are_left_out_and_said(table):
    table.loc[:4, "label"] = None
    table.loc[5:7, "size"] = None
    split = make_split(table, "label", new=table.copy(), drop=["day"])
    assert len(split.X_train) == len(table) - 8
    assert "training rows left out: 5 without a label, 3 with a missing feature cell" in split.notes


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give exactly one shift definition"),
        ({"split_by": "region", "train": ["north"], "time": "day", "cutoff": "2021-01-01"},
         "(got --split-by and --time)"),
        ({"split_by": "region"}, "--split-by COL and --train VALUE [VALUE ...] go together"),
        ({"time": "day"}, "--time COL and --cutoff VALUE go together"),
        ({"split_by": "place", "train": ["x"]}, "DATA has no column 'place'"),
        ({"split_by": "region", "train": ["west"]}, "--train ['west']: no row has 'region'"),
        ({"split_by": "region", "train": ["north", "south", "east"]}, "no usable new rows"),
        ({"time": "day", "cutoff": "2019-01-01"}, "no usable training rows"),
        ({"time": "colour", "cutoff": "x"}, "cannot read them as numbers or dates"),
        ({"split_by": "region", "train": ["north"], "group": "age"}, "DATA has no column 'age'"),
    ],
)  # fmt: skip
def test_one_line_errors(table, options, message):
    with pytest.raises(ValueError, match=None) as err:
        make_split(table, "label", **options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_target_absent_is_said(table):
    with pytest.raises(ValueError, match="DATA has no column 'class'"):
        make_split(table, "class", split_by="region", train=["north"])
    with pytest.raises(ValueError, match="--new has no column 'label'"):
        make_split(table, "label", new=table.drop(columns="label"))


def test_whole_number_labels_match_across_files_read_with_and_without_gaps(table):
    table["label"] = (table["label"] == "yes").astype(int)
    new = table.copy()
    new.loc[0, "label"] = None  # pandas reads this target as floats
    split = make_split(table, "label", new=new, drop=["day"])
    assert set(split.y_train) == set(split.y_test) == {"0", "1"}
