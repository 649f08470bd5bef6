"""``attnmoe fit`` / ``predict`` / ``impute`` on CSV files."""

import json

import numpy as np
import pandas as pd
import pytest

from attnmoe.cli import main
from attnmoe.tabular import AttentionMoEClassifier

FAST = json.dumps({"epochs": 30, "batch_size": 256, "learning_rate": 1e-2})


@pytest.fixture()
def table(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.integers(0, 4, n)
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "colour": colour,
            "size": size,
            "weight": rng.normal(size=n),
            "label": np.where((colour == "red") | (size >= 3), "yes", "no"),
        }
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return frame, path


def test_fit_then_predict_matches_the_python_api(tmp_path, table, capsys, monkeypatch):
    frame, path = table
    model, out = tmp_path / "model", tmp_path / "pred.csv"
    assert main(["fit", str(path), "--target", "label", "--drop", "id", "--out", str(model),
                 "--params", FAST]) == 0  # fmt: skip
    assert (
        "fitted on 300 rows, 3 columns (colour, size, weight), 2 classes" in capsys.readouterr().out
    )
    assert main(["predict", str(model), str(path), "--out", str(out), "--proba", "--explain"]) == 0
    pred = pd.read_csv(out)
    clf = AttentionMoEClassifier.from_pretrained(model)
    X = frame[["colour", "size", "weight"]]
    np.testing.assert_array_equal(pred["prediction"], clf.predict(X))
    np.testing.assert_allclose(pred[["p_no", "p_yes"]], clf.predict_proba(X), rtol=1e-6)
    assert list(pred.columns[:5]) == list(frame.columns)  # the input comes back unchanged
    assert (pred["prediction"] == frame["label"]).mean() > 0.9  # it learnt the rule
    # explained in chunks, the same answer as in one piece
    import attnmoe.cli.tabular as tabular_cli

    monkeypatch.setattr(tabular_cli, "_EXPLAIN_CHUNK", 7)
    chunked = tmp_path / "chunked.csv"
    assert main(["predict", str(model), str(path), "--out", str(chunked), "--explain"]) == 0
    again = pd.read_csv(chunked)
    assert (again["top_expert"] == pred["top_expert"]).all()
    np.testing.assert_allclose(again["top_expert_contribution"], pred["top_expert_contribution"])
    assert set(pred["top_expert"]) <= {"colour", "size", "weight"}  # never the target itself
    assert pred["top_expert"].notna().all() and pred["top_expert_contribution"].notna().all()
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # not private like a temporary file


def test_fit_leaves_unlabelled_rows_out_and_predict_keeps_true_labels(tmp_path, table, capsys):
    frame, _ = table
    gapped = frame.assign(label=frame["label"].where(frame.index >= 20))
    path = tmp_path / "gapped.csv"
    gapped.to_csv(path, index=False)
    model = tmp_path / "model"
    assert main(["fit", str(path), "--target", "label", "--drop", "id", "--out", str(model),
                 "--params", FAST]) == 0  # fmt: skip
    assert "20 rows without a 'label' label are left out" in capsys.readouterr().out
    # or they train their columns (the classifier's X_unlabeled)
    semi = tmp_path / "semi"
    assert main(["fit", str(path), "--target", "label", "--drop", "id", "--out", str(semi),
                 "--params", FAST, "--use-unlabeled"]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "20 rows without a 'label' label train their columns only" in said
    assert "fitted on 280 rows (and 20 without a label), 3 columns" in said
    plain = AttentionMoEClassifier.from_pretrained(model)
    both = AttentionMoEClassifier.from_pretrained(semi)
    X = frame[["colour", "size", "weight"]]
    assert not np.allclose(plain.predict_proba(X), both.predict_proba(X))
    # the prediction column may not overwrite a column of the data
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(path), "--out", str(out), "--column", "label"]) == 2
    assert "would repeat column(s) ['label']" in capsys.readouterr().err
    assert not out.exists()
    # nor one new column another (the prediction named like a probability column)
    argv = ["predict", str(model), str(path), "--out", str(out), "--column", "p_yes", "--proba"]
    assert main(argv) == 2
    assert "would repeat column(s) ['p_yes']" in capsys.readouterr().err


def test_impute_fills_every_missing_cell(tmp_path, table, capsys):
    frame, _ = table
    holes = frame.copy()
    holes.loc[::10, "colour"] = np.nan
    holes.loc[5::10, "size"] = np.nan
    path, out = tmp_path / "holes.csv", tmp_path / "filled.csv"
    holes.to_csv(path, index=False)
    assert main(["impute", str(path), "--keep", "id", "--out", str(out), "--params", FAST]) == 0
    assert "filled 60 cells (colour: 30, size: 30)" in capsys.readouterr().out
    filled = pd.read_csv(out)
    assert filled.notna().all().all()
    kept = holes.notna()
    pd.testing.assert_frame_equal(filled[kept], holes[kept], check_dtype=False)


def test_predict_warns_about_masked_cells_in_one_line(tmp_path, table, capsys):
    frame, path = table
    model = tmp_path / "model"
    assert main(["fit", str(path), "--target", "label", "--drop", "id", "--out", str(model),
                 "--params", FAST]) == 0  # fmt: skip
    gaps = frame.assign(colour=frame["colour"].where(frame.index >= 3).replace("blue", "teal"))
    gaps.to_csv(tmp_path / "gaps.csv", index=False)
    capsys.readouterr()
    assert (
        main(["predict", str(model), str(tmp_path / "gaps.csv"), "--out", str(tmp_path / "p.csv")])
        == 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    unseen = int((gaps["colour"] == "teal").sum())
    assert err == [
        f"warning: 3 missing and {unseen} unseen values were replaced by the mask token; "
        "predictions still use the other columns"
    ]
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(frame)  # every row still predicted


def test_columns_pass_through_as_written(tmp_path):
    rows = 120
    rng = np.random.default_rng(1)
    lines = ["zip,country,big_id,n,colour"]
    for r in range(rows):
        n = "" if r % 9 == 0 else str(int(rng.integers(1, 5)))
        colour = "" if r % 7 == 0 else ("red" if r % 2 else "blue")
        lines.append(f"0{1400 + r},NA,{10**17 + r},{n},{colour}")
    path, out = tmp_path / "ids.csv", tmp_path / "filled.csv"
    path.write_text("\n".join(lines) + "\n")
    argv = ["impute", str(path), "--keep", "zip", "country", "big_id", "--out", str(out)]
    assert main([*argv, "--params", FAST]) == 0
    written = out.read_text().splitlines()
    assert written[0] == lines[0]
    for before, after in zip(lines[1:], written[1:], strict=True):
        assert after.split(",")[:3] == before.split(",")[:3]  # kept cells unchanged, text for text
        n = after.split(",")[3]
        assert n.isdigit()  # whole numbers stay whole (no 3.0), gaps filled
        assert after.split(",")[4] in ("red", "blue")


def test_filled_cells_are_spelt_as_their_column_writes_them(tmp_path):
    lines = ["zip,member,size"]
    for r in range(150):
        zip_code = "" if r % 10 == 3 else ("02139" if r % 2 else "00501")
        member = "" if r % 10 == 5 else ("true" if r % 3 else "false")
        lines.append(f"{zip_code},{member},{'' if r % 10 == 7 else 1.50 + (r % 2)}")
    path, out = tmp_path / "t.csv", tmp_path / "f.csv"
    path.write_text("\n".join(lines) + "\n")
    assert main(["impute", str(path), "--out", str(out), "--params", FAST]) == 0
    filled = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert set(filled["zip"]) == {"02139", "00501"}  # not 2139
    assert set(filled["member"]) == {"true", "false"}  # not True
    assert set(filled["size"]) <= {"1.5", "2.5"} and (filled["size"] != "").all()


def test_binned_whole_numbers_are_filled_with_values_the_column_holds(tmp_path):
    # more than 50 distinct codes: the column is binned, and a bin's median can fall between
    rng = np.random.default_rng(3)
    codes = rng.integers(1000, 1200, 300)
    zips = np.array([f"0{c}" for c in codes], dtype=object)
    zips[::10] = ""
    path, out = tmp_path / "z.csv", tmp_path / "f.csv"
    pd.DataFrame({"zip": zips, "colour": rng.choice(["a", "b"], 300)}).to_csv(path, index=False)
    assert main(["impute", str(path), "--out", str(out), "--params", FAST]) == 0
    filled = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert set(filled["zip"]) <= set(zips[zips != ""])  # 0-padded, never 1028.5 or 1028


def test_compressed_csv_and_blank_first_line(tmp_path, table, capsys):
    frame, _ = table
    path, out = tmp_path / "t.csv.gz", tmp_path / "p.csv"
    frame.to_csv(path, index=False)  # gzip, by the suffix
    model = tmp_path / "m"
    assert main(["fit", str(path), "--target", "label", "--drop", "id", "--out", str(model),
                 "--params", FAST]) == 0  # fmt: skip
    assert main(["predict", str(model), str(path), "--out", str(out)]) == 0
    blank = tmp_path / "blank.csv"
    blank.write_text("\na,a\n1,2\n")
    assert main(["impute", str(blank), "--out", str(tmp_path / "f.csv")]) == 2
    assert "repeated column names ['a']" in capsys.readouterr().err
    latin = tmp_path / "latin.csv"
    latin.write_bytes("name,n\nJos\xe9,1\n".encode("latin-1"))
    assert main(["impute", str(latin), "--out", str(tmp_path / "f.csv")]) == 2
    assert "latin.csv is not UTF-8" in capsys.readouterr().err


def test_big_whole_number_labels_stay_exact(tmp_path):
    rng = np.random.default_rng(2)
    colour = rng.choice(["red", "blue"], 200)
    label = np.where(colour == "red", "9007199254740993", "9007199254740992")
    label[::25] = ""  # gaps: pandas would read the column as floats and merge the two
    path, model, out = tmp_path / "t.csv", tmp_path / "m", tmp_path / "p.csv"
    pd.DataFrame({"colour": colour, "y": label}).to_csv(path, index=False)
    assert main(["fit", str(path), "--target", "y", "--out", str(model), "--params", FAST]) == 0
    assert main(["predict", str(model), str(path), "--out", str(out)]) == 0
    pred = pd.read_csv(out, dtype=str)
    expected = np.where(colour == "red", "9007199254740993", "9007199254740992")
    assert (pred["prediction"] == expected).mean() > 0.95


def test_random_state_flag_sets_the_estimators_random_state(tmp_path):
    path, model = tmp_path / "t.csv", tmp_path / "m"
    pd.DataFrame({"a": list("xyxy") * 10, "y": list("uvuv") * 10}).to_csv(path, index=False)
    fast = json.dumps({"epochs": 1, "batch_size": 256})
    argv = ["fit", str(path), "--target", "y", "--out", str(model), "--params", fast]
    assert main([*argv, "--random-state", "7"]) == 0
    assert AttentionMoEClassifier.from_pretrained(model).random_state == 7


def test_command_errors(tmp_path, table, capsys):
    _, path = table
    model = tmp_path / "model"
    cases = [
        (["fit", str(path), "--target", "nope", "--out", str(model)], "no column(s) ['nope']"),
        (["fit", str(path), "--target", "label", "--out", str(model), "--params", '{"epoch": 3}'],
         "['epoch'] are not parameters of AttentionMoEClassifier"),
        (["fit", str(path), "--target", "label", "--out", str(model), "--params", "[1]"],
         "must be a JSON object"),
        (["predict", str(tmp_path / "none"), str(path), "--out", str(tmp_path / "p.csv")],
         "no classifier.json"),
        (["impute", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "f.csv")],
         "No such file"),
    ]  # fmt: skip
    one_class = tmp_path / "one.csv"
    pd.DataFrame({"a": [1, 2, 3], "y": ["k", "k", "k"]}).to_csv(one_class, index=False)
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    cases += [
        (["fit", str(one_class), "--target", "y", "--out", str(model)], "has one value only"),
        (["fit", str(path), "--target", "label", "--out", str(model), "--params",
          '{"random_state": 3}'], "give the seed with --random-state"),
        (["fit", str(path), "--target", "label", "--out", str(project)], "not a saved model"),
        (["fit", str(path), "--target", "label", "--out", str(model), "--params",
          '{"epochs": "x"}'], "epochs must be a number, got 'x'"),
        (["impute", str(path), "--out", str(tmp_path)], "is a folder"),
    ]  # fmt: skip
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases.append((["impute", str(empty), "--out", str(tmp_path / "f.csv")], "empty.csv"))
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("a,a,b\n1,2,3\n4,,6\n")
    cases.append((["impute", str(repeated), "--out", str(tmp_path / "f.csv")],
                  "repeated column names ['a']"))  # fmt: skip
    indexed = tmp_path / "indexed.csv"
    indexed.write_text("a,b\n00000,2,y\n00001,,n\n")
    cases.append((["impute", str(indexed), "--out", str(tmp_path / "f.csv")],
                  "fewer columns than the rows hold"))  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not model.exists()
    assert [p.name for p in project.iterdir()] == ["notes.txt"]  # the folder was left alone


def test_predictions_are_spelt_as_the_labels_were(tmp_path):
    rng = np.random.default_rng(3)
    colour = rng.choice(["red", "blue"], 200)
    frame = pd.DataFrame(
        {
            "colour": colour,
            "flag": np.where(colour == "red", "true", "false"),  # pandas: True / False
            "code": np.where(colour == "red", "007", "010"),  # pandas: 7 / 10
        }
    )
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    for target, other in (("flag", "code"), ("code", "flag")):
        model, out = tmp_path / f"m_{target}", tmp_path / f"p_{target}.csv"
        assert main(["fit", str(path), "--target", target, "--drop", other, "--out", str(model),
                     "--params", FAST]) == 0  # fmt: skip
        assert main(["predict", str(model), str(path), "--out", str(out), "--proba"]) == 0
        pred = pd.read_csv(out, dtype=str, keep_default_na=False)
        assert set(pred["prediction"]) <= set(frame[target])
        assert (pred["prediction"] == frame[target]).mean() > 0.95
        assert {f"p_{v}" for v in frame[target]} <= set(pred.columns)


def test_labels_spelt_several_ways_stay_one_class():
    from attnmoe.cli.csv_files import labels_as_written as _labels

    as_read = pd.Series([True, True, True, False, False])
    assert _labels(as_read, pd.Series(["True", "true", "TRUE", "False", "false"])).nunique() == 2
    assert _labels(pd.Series([7, 7, 8]), pd.Series(["7", "007", "8"])).tolist() == [7, 7, 8]
    assert _labels(pd.Series([7, 10]), pd.Series(["007", "010"])).tolist() == ["007", "010"]


def test_a_refused_fit_parameter_is_one_error_line(tmp_path, capsys):
    # the line that ends a finished progress bar must not precede an error
    data = tmp_path / "data.csv"
    pd.DataFrame({"a": ["x", "y"] * 10, "label": ["p", "q"] * 10}).to_csv(data, index=False)
    argv = ["fit", str(data), "--target", "label", "--out", str(tmp_path / "m")]
    assert main([*argv, "--params", '{"epochs": -1}']) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: cannot fit with these --params: The 'epochs' parameter of "
        "AttentionMoEClassifier must be an int in the range [1, inf). Got -1 instead."
    ]
