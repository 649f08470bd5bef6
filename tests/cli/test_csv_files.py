"""CSV input: delimiters sniffed or given, inf and empty columns said, repeated names refused."""

import json

import numpy as np
import pandas as pd
import pytest

from attnmoe.cli import main
from attnmoe.cli.csv_files import read_table, sniff_separator
from attnmoe.tabular import AttentionMoEClassifier

FAST = json.dumps({"epochs": 3, "batch_size": 64, "learning_rate": 1e-2})


def _frame(n=60):
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green"], n)
    return pd.DataFrame(
        {
            "colour": colour,
            "weight": rng.normal(size=n).round(3),
            "label": np.where(colour == "red", "yes", "no"),
        }
    )


@pytest.mark.parametrize(("sep", "said"), [(";", "';'"), ("\t", "tabs"), ("|", "'|'")])
def test_the_delimiter_is_sniffed_and_said(tmp_path, sep, said, capsys):
    path = tmp_path / "data.csv"
    _frame().to_csv(path, index=False, sep=sep)
    typed, _ = read_table(str(path))
    assert list(typed.columns) == ["colour", "weight", "label"]
    assert f"columns separated by {said}" in capsys.readouterr().out
    pd.testing.assert_frame_equal(typed, _frame())


def test_comma_files_stay_comma_files(tmp_path, capsys):
    path = tmp_path / "data.csv"
    # a semicolon inside a quoted name, a one-column file, and decimal commas in a ';' file
    path.write_text('"a;b",c\n"x;y",1\n"u;v",2\n')
    assert sniff_separator(str(path)) == ","
    path.write_text("only\n1\n2\n")
    assert sniff_separator(str(path)) == ","
    path.write_text("x;y\n1,5;2\n3,25;4\n")
    assert sniff_separator(str(path)) == ";"
    typed, _ = read_table(str(path), sep=";")  # an explicit --sep is used as given, silently
    assert list(typed.columns) == ["x", "y"]
    assert capsys.readouterr().out == ""


def test_a_wrong_sep_that_reads_one_column_is_refused(tmp_path, capsys):
    # read with the wrong --sep, a ';' table is one column: imputing it filled nothing, exit 0
    path, out = tmp_path / "data.csv", tmp_path / "filled.csv"
    frame = _frame()
    frame.loc[::5, "colour"] = None
    frame.to_csv(path, index=False, sep=";")
    with pytest.raises(ValueError, match=r"one column 'colour;weight;label'.*--sep ';'"):
        read_table(str(path), sep=",")
    assert main(["impute", str(path), "--out", str(out), "--sep", ","]) == 2
    assert "did you mean --sep ';'?" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("typed", ["\\t", "tab"])
def test_a_tab_can_be_typed_as_backslash_t(tmp_path, typed):
    path = tmp_path / "data.tsv"
    _frame().to_csv(path, index=False, sep="\t")
    frame, _ = read_table(str(path), sep=typed)
    assert list(frame.columns) == ["colour", "weight", "label"]


def test_fit_and_predict_read_a_semicolon_csv(tmp_path, capsys):
    data, model, out = tmp_path / "data.csv", tmp_path / "model", tmp_path / "pred.csv"
    _frame().to_csv(data, index=False, sep=";")
    assert main(["fit", str(data), "--target", "label", "--out", str(model), "--params", FAST]) == 0
    assert "2 columns (colour, weight)" in capsys.readouterr().out
    assert main(["predict", str(model), str(data), "--out", str(out), "--sep", ";"]) == 0
    assert "prediction" in pd.read_csv(out).columns
    assert main(["predict", str(model), str(data), "--out", str(out), "--sep", ";;"]) == 2
    assert "--sep must be one character" in capsys.readouterr().err


def test_inf_cells_and_empty_columns_are_said(tmp_path, capsys):
    frame = _frame().assign(empty=np.nan)
    frame.loc[:2, "weight"] = [np.inf, -np.inf, np.inf]
    data, model, out = tmp_path / "data.csv", tmp_path / "model", tmp_path / "pred.csv"
    frame.to_csv(data, index=False)
    with pytest.warns(UserWarning, match="column 'weight' has 3 inf/-inf cell"):
        read_table(str(data))
    assert main(["fit", str(data), "--target", "label", "--out", str(model), "--params", FAST]) == 0
    err = capsys.readouterr().err
    assert "column 'weight' has 3 inf/-inf cell(s)" in err
    assert "column 'empty' is empty (every cell missing): left out of the model" in err
    clf = AttentionMoEClassifier.from_pretrained(model)
    assert list(clf.feature_names_in_) == ["colour", "weight"]
    frame.assign(weight=np.nan).to_csv(data, index=False)
    assert main(["predict", str(model), str(data), "--out", str(out)]) == 0
    assert "column 'weight' is empty in DATA" in capsys.readouterr().err


def test_report_names_repeated_columns(tmp_path, capsys):
    data, model = tmp_path / "data.csv", tmp_path / "model"
    _frame().to_csv(data, index=False)
    assert main(["fit", str(data), "--target", "label", "--out", str(model), "--params", FAST]) == 0
    data.write_text("colour,weight,colour\nred,1,red\ngreen,2,green\n")
    capsys.readouterr()
    for argv in (["report", str(model), str(data)], ["predict", str(model), str(data)]):
        assert main([*argv, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "repeated column names ['colour']" in err
