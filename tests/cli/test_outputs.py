"""Outputs never overwrite inputs, are written whole or not at all, and say what they replaced."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from attnmoe.cli import main
from attnmoe.cli import outputs as outputs_module
from attnmoe.cli.outputs import check_output, write_csv, write_text

FAST = json.dumps({"epochs": 3, "batch_size": 64, "learning_rate": 1e-2})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small CSV and the classifier `attnmoe fit` made from it (fitted once)."""
    root = tmp_path_factory.mktemp("fitted")
    rng = np.random.default_rng(0)
    n = 80
    colour = rng.choice(["red", "green"], n)
    frame = pd.DataFrame(
        {"colour": colour, "size": rng.integers(0, 3, n), "label": np.where(colour == "red", 1, 0)}
    )
    data = root / "data.csv"
    frame.to_csv(data, index=False)
    model = root / "model"
    assert main(["fit", str(data), "--target", "label", "--out", str(model), "--params", FAST]) == 0
    return data, model


def _snapshot(*paths):
    """Every file under ``paths`` with its bytes."""
    files = {}
    for path in paths:
        for f in [path] if path.is_file() else sorted(path.rglob("*")):
            if f.is_file():
                files[f] = f.read_bytes()
    return files


def _refused(argv, capsys, words):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err


# --- the helper ---------------------------------------------------------------------------


def test_check_output_refuses_inputs_however_spelt(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n")
    (tmp_path / "link.csv").symlink_to(data)
    model = tmp_path / "model"
    model.mkdir()
    for out in (data, tmp_path / "sub" / ".." / "data.csv", tmp_path / "link.csv"):
        with pytest.raises(ValueError, match="is the input"):
            check_output(out, inputs=[data])
    with pytest.raises(ValueError, match="holds the input"):
        check_output(tmp_path, inputs=[data], folder=True)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        check_output(tmp_path, inputs=[data])  # a file output, not a folder
    for out in (model, model / "pred.csv", model / "deep" / "x.html"):
        with pytest.raises(ValueError, match="inside the model folder"):
            check_output(out, model_dirs=[model], folder=True)
    with pytest.raises(ValueError, match="holds the model folder"):
        check_output(tmp_path, model_dirs=[model], folder=True)
    assert check_output(tmp_path / "pred.csv", inputs=[data, None], model_dirs=[model, None])


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch, capsys):
    out = tmp_path / "pred.csv"
    out.write_text("old\n")

    def half_then_fail(self, fh, **kwargs):
        fh.write("a,b\n1,")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_csv(pd.DataFrame({"a": [1]}), out)
    assert out.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind
    monkeypatch.undo()
    write_text(out, "new\n")
    assert out.read_text() == "new\n"
    assert capsys.readouterr().out == f"replaced {out}\n"


def test_a_failed_rename_leaves_the_old_file_whole(tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("old")

    def fail(*args):
        raise OSError("rename failed")

    monkeypatch.setattr(outputs_module.os, "replace", fail)
    with pytest.raises(OSError), outputs_module.staged_path(out) as staging:
        staging.write_text("new")
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]


# --- every command that writes ------------------------------------------------------------


def test_predict_and_impute_refuse_their_input_and_the_model(fitted, tmp_path, capsys):
    data, model = fitted
    before = _snapshot(data, model)
    _refused(["predict", model, data, "--out", data], capsys, "is the input")
    _refused(["predict", model, data, "--out", model / "pred.csv"], capsys, "inside the model")
    _refused(["predict", model, data, "--out", model], capsys, "is a folder")
    _refused(["impute", data, "--out", data], capsys, "is the input")
    assert _snapshot(data, model) == before
    out = tmp_path / "pred.csv"
    out.write_text("old\n")
    assert main(["predict", str(model), str(data), "--out", str(out)]) == 0
    assert f"replaced {out}\n" in capsys.readouterr().out
    assert "prediction" in pd.read_csv(out).columns


def test_fit_refuses_an_output_holding_its_data(fitted, tmp_path, capsys):
    data, model = fitted
    inside = model / "data.csv"  # a CSV kept in the model folder it would replace
    inside.write_bytes(data.read_bytes())
    try:
        before = _snapshot(model)
        _refused(["fit", inside, "--target", "label", "--out", model], capsys, "holds the input")
        _refused(["fit", data, "--target", "label", "--out", data], capsys, "is the input")
        assert _snapshot(model) == before
    finally:
        inside.unlink()


def test_report_refuses_inputs_and_writes_atomically(fitted, tmp_path, capsys, monkeypatch):
    data, model = fitted
    before = _snapshot(data, model)
    _refused(["report", model, data, "--out", data], capsys, "is the input")
    _refused(["report", model, data, "--out", model / "report.html"], capsys, "inside the model")
    shift = tmp_path / "shift.csv"
    shift.write_bytes(data.read_bytes())
    _refused(["report", model, data, "--shift-data", shift, "--out", shift], capsys, "the input")
    assert _snapshot(data, model) == before

    import attnmoe.explain.report as report_module

    out = tmp_path / "report.html"
    out.write_text("old report")

    def half_then_fail(clf, frame, path, **kwargs):
        open(path, "w").write("<html>half")
        raise ValueError("boom")

    monkeypatch.setattr(report_module, "write_report", half_then_fail)
    _refused(["report", model, data, "--out", out], capsys, "boom")
    assert out.read_text() == "old report" and sorted(tmp_path.iterdir()) == [out, shift]


def test_a_file_output_ending_in_a_separator_is_refused(fitted, tmp_path, capsys):
    data, model = fitted
    folder = f"{tmp_path / 'rdir'}{os.sep}"  # a folder that does not exist yet
    with pytest.raises(IsADirectoryError, match="names a folder; give a file name"):
        check_output(folder)
    _refused(["report", model, data, "--out", folder], capsys, "names a folder; give a file name")
    assert not (tmp_path / "rdir").exists()  # no file named after the folder


def test_fit_ends_the_progress_bar_line_before_it_prints(fitted, tmp_path, capsys):
    data, _ = fitted
    out = tmp_path / "m1"
    argv = ["fit", str(data), "--target", "label", "--out", str(out), "--params", FAST]
    for _ in range(2):  # the second one replaces m1
        assert main(argv) == 0
        captured = capsys.readouterr()
        # in a log, the bar's last frame ends its line: "replaced" is not glued to it
        assert "MLM" in captured.err and captured.err.endswith("\r\n"), captured.err
    assert captured.out.startswith(f"replaced {out}\n")


def test_report_sentence_and_convert_refuse_the_model_folder(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    before = _snapshot(model)
    _refused(["report-sentence", model, "a b", "--out", model / "s.html"], capsys, "inside")
    _refused(["convert", model, model], capsys, "DESTINATION")
    _refused(["convert", model, model / "experts"], capsys, "inside the model folder")
    assert _snapshot(model) == before


def test_training_commands_refuse_their_inputs(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a b c\n")
    init = tmp_path / "init"
    init.mkdir()
    (init / "config.json").write_text("{}")
    tokens = tmp_path / "tokens.npy"
    np.save(tokens, np.zeros((4, 3), dtype=np.int64))
    before = _snapshot(corpus, init, tokens)
    _refused(["train-text", corpus, "--out", corpus], capsys, "is the input")
    _refused(["train-text", corpus, "--checkpoint-dir", init, "--out", init / "final"], capsys,
             "inside the model folder")  # fmt: skip
    ddp = ["train-ddp", "--tokens", tokens, "--vocab-size", "5"]
    _refused([*ddp, "--init", init, "--out", init], capsys, "inside the model folder")
    _refused([*ddp, "--out", tokens], capsys, "is the input")
    ckpt = ["--checkpoint-dir", tmp_path / "ckpt"]
    _refused([*ddp, *ckpt, "--out", tmp_path / "ckpt" / "final"], capsys, "inside the checkpoint")
    questions = tmp_path / "questions.txt"
    questions.write_text(": capital\na b c d\n")
    _refused(["analogy", f"w2v:{corpus}", "--questions", questions, "--out", tmp_path], capsys,
             "holds the input")  # fmt: skip
    assert _snapshot(corpus, init, tokens) == before
