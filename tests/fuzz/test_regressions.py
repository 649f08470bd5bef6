"""The bugs the fuzz suite found, each as a plain test."""

from __future__ import annotations

import json

import pytest

from attnmoe.cli import main
from attnmoe.model import ModelFileError
from attnmoe.tabular import AttentionMoEClassifier


def _stderr_lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_a_parser_error_ending_in_a_newline_is_one_error_line(tmp_path, capsys):
    # pandas' tokenizer message ends in "\n": it printed a blank second line
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,label\n1,2,x\n1,2,y,extra\n")
    code = main(["fit", str(path), "--target", "label", "--out", str(tmp_path / "m")])
    assert code == 2
    lines = _stderr_lines(capsys)
    assert (
        len(lines) == 1 and lines[0].startswith("error: ") and "is not a readable CSV" in lines[0]
    )


def test_a_blank_prediction_column_name_is_refused(classifier, tmp_path, capsys):
    # a blank header cell reads back as "Unnamed: N": the predictions had no name
    _, model, csv = classifier
    out = tmp_path / "pred.csv"
    for blank in ["", "  "]:
        assert main(["predict", str(model), str(csv), "--out", str(out), "--column", blank]) == 2
        assert _stderr_lines(capsys) == ["error: --column must be a name, not blank"]
    assert not out.exists()


def test_a_list_as_a_type_tag_in_classifier_json_is_a_model_file_error(classifier, tmp_path):
    # the tag was looked up in a dict: TypeError "unhashable type: 'list'"
    import shutil

    _, model, _ = classifier
    copy = shutil.copytree(model, tmp_path / "model")
    meta = json.loads((copy / "classifier.json").read_text())
    meta["encoder"]["columns"][0]["categories"][0][0] = []
    (copy / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="must be a \\[type, value\\] pair"):
        AttentionMoEClassifier.from_pretrained(copy)


def test_sizes_too_large_to_allocate_are_one_error_line(tmp_path, capsys):
    # torch's allocator raises RuntimeError: it escaped main() as a traceback
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\n" * 20)
    argv = ["train-text", str(text), "--out", str(tmp_path / "out"), "--length", "4"]
    argv += ["--epochs", "1", "--min-count", "1", "--d-model", str(10**12), "--quiet"]
    assert main(argv) == 2
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("error: not enough memory for the sizes asked")
    assert not (tmp_path / "out").exists()


def test_other_runtime_errors_still_propagate(monkeypatch):
    # only running out of memory is the user's to fix; other RuntimeErrors are bugs to see
    import attnmoe.cli.model as model_cli

    def broken(args):
        raise RuntimeError("an internal error")

    monkeypatch.setattr(model_cli, "_cmd_version", broken)
    with pytest.raises(RuntimeError, match="an internal error"):
        main(["version"])


@pytest.mark.parametrize("device", ["x", "", "meta", "cuda:99"])
def test_a_device_this_machine_lacks_is_a_usage_error(tmp_path, capsys, device):
    # torch failed in the middle of the command: AssertionError "Torch not compiled with
    # CUDA enabled" or RuntimeError "Expected one of cpu, cuda, ... device type"
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\n" * 20)
    argv = ["train-text", str(text), "--out", str(tmp_path / "out"), "--length", "4"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--epochs", "1", "--min-count", "1", "--quiet", "--device", device])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .startswith("attnmoe train-text: error: argument --device: ")
    )
    assert not (tmp_path / "out").exists()


def test_a_thread_count_below_one_is_a_value_error(tmp_path, capsys):
    # torch.set_num_threads raised RuntimeError: a traceback from `--num-threads -1`
    from attnmoe.training.threads import torch_threads

    for n in [0, -1]:
        with pytest.raises(ValueError, match="positive integer"), torch_threads(n):
            pass
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\n" * 20)
    argv = ["train-text", str(text), "--out", str(tmp_path / "out"), "--length", "4"]
    assert main([*argv, "--epochs", "1", "--min-count", "1", "--quiet", "--num-threads", "-1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: the number of threads must be a positive integer, got -1"
    ]


def test_more_layers_than_memory_holds_are_refused_before_building(attention, tmp_path, capsys):
    # n_layers of 10**13 built layer after layer until memory ran out (the fuzz run
    # reached 14 GiB): in train-text, and on the meta device when loading a config
    import shutil

    from attnmoe.model import AttentionConfig, BidirectionalAttention, load_model

    with pytest.raises(MemoryError, match="layers need"):
        BidirectionalAttention(AttentionConfig(vocab_size=5, max_len=3, d_model=8, n_layers=10**13))
    copy = shutil.copytree(attention[1], tmp_path / "model")
    config = json.loads((copy / "config.json").read_text())
    config["config"]["n_layers"] = 10**13
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="describes no model that fits"):
        load_model(copy)
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\n" * 20)
    argv = ["train-text", str(text), "--out", str(tmp_path / "out"), "--length", "4"]
    assert main([*argv, "--epochs", "1", "--min-count", "1", "--n-layers", str(10**13)]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: not enough memory")
