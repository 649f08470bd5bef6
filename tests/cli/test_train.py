"""``attnmoe train-ddp``: its token file checked whole before training, resumes said."""

import numpy as np
import pytest

import attnmoe.training.distributed as distributed
from attnmoe.cli import main
from attnmoe.training.distributed import ArraySource

ARGS = ["--vocab-size", "40", "--d-model", "8", "--steps", "2", "--global-batch", "4", "--quiet"]


@pytest.fixture()
def no_training(monkeypatch):
    """The trainer, replaced by one that fails the test if it is reached."""

    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(distributed, "train_mlm_distributed", never)


def test_a_text_file_as_tokens_says_what_is_expected(tmp_path, capsys, no_training):
    text = tmp_path / "tokens.txt"
    text.write_text("1 2 3 4\n5 6 7 8\n")
    assert main(["train-ddp", "--tokens", str(text), *ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a .npy file" in err and "numpy.save" in err
    assert "pickled" not in err
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    assert main(["train-ddp", "--tokens", str(objects), *ARGS]) == 2
    assert "not a .npy of integer token ids" in capsys.readouterr().err


@pytest.mark.parametrize(("bad", "shown"), [(40, "0..40"), (-1, "-1..39")])
def test_a_bad_token_id_anywhere_is_found_before_training(
    tmp_path, capsys, no_training, bad, shown
):
    tokens = np.arange(8 * 64, dtype=np.int32).reshape(64, 8) % 40
    tokens[-1, -1] = bad  # in the last window: the last batch trained
    np.save(tmp_path / "tokens.npy", tokens)
    assert main(["train-ddp", "--tokens", str(tmp_path / "tokens.npy"), *ARGS]) == 2
    err = capsys.readouterr().err
    assert f"holds token ids {shown}, outside the model's vocabulary 0..39" in err


def test_id_range_streams_the_memory_map(tmp_path):
    stream = np.arange(1003, dtype=np.int64) % 97
    stream[1001] = 500  # past the last whole window of 10: never trained on
    stream[5] = -3
    np.save(tmp_path / "t.npy", stream)
    source = ArraySource.from_npy(tmp_path / "t.npy", window=10)
    assert source.id_range(chunk=7) == (-3, 96) == source.id_range()
    rows = ArraySource(np.arange(60).reshape(6, 10))
    assert rows.id_range(chunk=15) == (0, 59)


def test_resume_without_a_checkpoint_is_said(tmp_path, capsys):
    np.save(tmp_path / "tokens.npy", np.arange(8 * 16, dtype=np.int32).reshape(16, 8) % 40)
    argv = ["train-ddp", "--tokens", str(tmp_path / "tokens.npy"), *ARGS,
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--resume"]  # fmt: skip
    assert main(argv) == 0
    assert "--resume: no checkpoint in" in capsys.readouterr().err
    assert main(argv) == 0  # now there is one: nothing said
    captured = capsys.readouterr()
    assert "--resume" not in captured.err and "from step 2" in captured.out


@pytest.fixture()
def init_model(tmp_path):
    """A saved model of vocab_size 40, d_model 8, 2 heads, 1 layer, pure blocks."""
    from attnmoe.model import AttentionConfig, BidirectionalAttention

    config = AttentionConfig(vocab_size=40, max_len=8, d_model=8, n_heads=2, n_layers=1)
    BidirectionalAttention(config).save_pretrained(tmp_path / "init")
    np.save(tmp_path / "tokens.npy", np.arange(8 * 16, dtype=np.int32).reshape(16, 8) % 40)
    return tmp_path / "init"


@pytest.mark.parametrize(
    "option",
    [
        ["--d-model", "16"],
        ["--n-heads", "4"],
        ["--n-layers", "2"],
        ["--block", "bert"],
        ["--vocab-size", "41"],
    ],
)
def test_init_refuses_a_size_it_would_drop(init_model, tmp_path, capsys, no_training, option):
    argv = ["train-ddp", "--tokens", str(tmp_path / "tokens.npy"), "--init", str(init_model)]
    assert main([*argv, "--steps", "2", "--global-batch", "4", *option]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{option[0]} {option[1]} differs from the --init" in err


def test_init_accepts_the_sizes_it_has(init_model, tmp_path, capsys):
    argv = ["train-ddp", "--tokens", str(tmp_path / "tokens.npy"), "--init", str(init_model)]
    same = ["--n-heads", "2", "--n-layers", "1", "--block", "pure"]
    assert main([*argv, *ARGS, *same]) == 0  # ARGS: --vocab-size 40 --d-model 8, the model's
    assert main([*argv, "--steps", "2", "--global-batch", "4", "--quiet"]) == 0


def test_a_new_model_has_the_stated_default_sizes(tmp_path, monkeypatch):
    made = []

    def record(model, *args, **kwargs):
        made.append(model.config)
        raise SystemExit(0)

    monkeypatch.setattr(distributed, "train_mlm_distributed", record)
    np.save(tmp_path / "tokens.npy", np.arange(8 * 16, dtype=np.int32).reshape(16, 8) % 40)
    with pytest.raises(SystemExit):
        main(["train-ddp", "--tokens", str(tmp_path / "tokens.npy"), "--vocab-size", "40"])
    config = made[0]
    sizes = (config.d_model, config.n_heads, config.n_layers, config.block)
    assert sizes == (64, 2, 1, "pure")


def test_the_messages_name_the_options(tmp_path, capsys, no_training):
    np.save(tmp_path / "tokens.npy", np.arange(8 * 16, dtype=np.int32).reshape(16, 8) % 40)
    argv = ["train-ddp", "--tokens", str(tmp_path / "tokens.npy"), *ARGS]
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --resume needs --checkpoint-dir\n", err
    ck = str(tmp_path / "ck")
    assert main([*argv, "--out", ck, "--checkpoint-dir", ck]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inside the checkpoint folder" in err
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--checkpoint-dir", str(out / "c")]) == 2
    assert "holds the checkpoint folder" in capsys.readouterr().err
