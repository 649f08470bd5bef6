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
