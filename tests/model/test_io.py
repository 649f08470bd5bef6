"""save_pretrained / from_pretrained round trips and their failure modes."""

import json
from pathlib import Path

import pytest
import torch

from attnmoe import (
    CBOW,
    AttentionConfig,
    BidirectionalAttention,
    ContinuousWordExperts,
    ModelFileError,
    load_model,
)
from attnmoe.model import io

from .helpers import random_attention


@pytest.mark.parametrize("form", ["attention", "experts", "cbow"])
def test_round_trip_is_exact(tmp_path, form):
    model = random_attention(0, vocab_size=6, max_len=4, d_model=4, n_heads=2, block="bert")
    if form == "experts":
        model = model.to_experts()
    elif form == "cbow":
        model = CBOW(AttentionConfig(vocab_size=6, max_len=4, d_model=4))
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "manifest.json",
        "model.safetensors",
    ]
    loaded = type(model).from_pretrained(tmp_path / "m")
    x = torch.randint(0, 6, (3, 4))
    assert torch.equal(loaded.masked_log_probs(x), model.eval().masked_log_probs(x))
    assert loaded.config == model.config
    assert type(load_model(tmp_path / "m")) is type(model)


def test_overwrite_keeps_no_leftovers(tmp_path):
    first = BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=2))
    second = BidirectionalAttention(AttentionConfig(vocab_size=5, max_len=3))
    first.save_pretrained(tmp_path / "m")
    second.save_pretrained(tmp_path / "m")
    assert BidirectionalAttention.from_pretrained(tmp_path / "m").config.vocab_size == 5
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_folder_that_is_not_a_model_is_not_replaced(tmp_path):
    model = BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=2))
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "data.csv").write_text("a,b\n")
    with pytest.raises(FileExistsError, match=r"holds no config\.json"):
        model.save_pretrained(tmp_path / "project")
    assert [p.name for p in (tmp_path / "project").iterdir()] == ["data.csv"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        model.save_pretrained(tmp_path / "file")
    (tmp_path / "repo" / ".git").mkdir(parents=True)  # hidden, but someone's
    with pytest.raises(FileExistsError, match="not a saved model"):
        model.save_pretrained(tmp_path / "repo")
    assert (tmp_path / "repo" / ".git").is_dir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_text("")  # desktop clutter does not count
    model.save_pretrained(tmp_path / "empty")  # an empty folder is fine
    assert (tmp_path / "empty" / "config.json").is_file()


def test_crash_while_writing_leaves_the_old_model_intact(tmp_path, monkeypatch):
    model = BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=2))
    model.save_pretrained(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        BidirectionalAttention(AttentionConfig(vocab_size=9, max_len=2)).save_pretrained(
            tmp_path / "m"
        )
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_corrupted_and_incompatible_directories(tmp_path):
    with pytest.raises(ModelFileError, match="not a model directory"):
        BidirectionalAttention.from_pretrained(tmp_path / "missing")

    model = BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=2))
    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ModelFileError, match="corrupted"):
        BidirectionalAttention.from_pretrained(tmp_path / "m")

    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        BidirectionalAttention.from_pretrained(tmp_path / "m")

    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["vocab_size"] = 7
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="do not match"):
        BidirectionalAttention.from_pretrained(tmp_path / "m")

    meta["config"]["vocab_size"] = 3
    meta["config"]["flavour"] = "x"
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="incompatible config"):
        BidirectionalAttention.from_pretrained(tmp_path / "m")

    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ModelFileError, match="holds a BidirectionalAttention"):
        ContinuousWordExperts.from_pretrained(tmp_path / "m")

    # fields of the wrong type, and weights that are not floats: one clear error each
    for field, value, message in (
        ("format_version", "1", "format_version must be an integer"),
        ("model_type", ["BidirectionalAttention"], "model_type must be text"),
        ("config", [], "'config' an object"),
    ):
        model.save_pretrained(tmp_path / "m")
        meta = json.loads((tmp_path / "m" / "config.json").read_text())
        (tmp_path / "m" / "config.json").write_text(json.dumps({**meta, field: value}))
        with pytest.raises(ModelFileError, match=message):
            load_model(tmp_path / "m")
    model.save_pretrained(tmp_path / "m")
    from safetensors.torch import save_file

    save_file({k: torch.zeros(v.shape, dtype=torch.int64) for k, v in model.state_dict().items()},
              tmp_path / "m" / "model.safetensors")  # fmt: skip
    with pytest.raises(ModelFileError, match=r"holds \['torch.int64'\] tensors"):
        load_model(tmp_path / "m")


def test_dtype_is_kept(tmp_path):
    model = random_attention(1, vocab_size=3, max_len=2)  # float64
    model.save_pretrained(tmp_path / "m")
    assert (
        BidirectionalAttention.from_pretrained(tmp_path / "m").output.weight.dtype == torch.float64
    )


def test_no_pickle_in_the_package():
    import pathlib

    import attnmoe

    root = pathlib.Path(attnmoe.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line}"


def test_a_symlinked_model_folder_is_replaced_by_a_folder_and_its_target_kept(tmp_path):
    first = BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=2))
    first.save_pretrained(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    BidirectionalAttention(AttentionConfig(vocab_size=5, max_len=2)).save_pretrained(
        tmp_path / "link"
    )
    assert not (tmp_path / "link").is_symlink()
    assert BidirectionalAttention.from_pretrained(tmp_path / "link").config.vocab_size == 5
    assert BidirectionalAttention.from_pretrained(tmp_path / "real").config.vocab_size == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # no leftover


def _killed_save(tmp_path, when: str) -> None:
    """Save a vocab_size=9 model over ``tmp_path / "m"`` in a process killed at ``when``:
    "writing" (inside the staging folder) or "renames" (between the save's two renames)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import os
        from attnmoe import AttentionConfig, BidirectionalAttention
        from attnmoe.model import io

        real_replace, calls = os.replace, []
        def replace(src, dst):
            calls.append(src)
            if {when!r} == "renames" and len(calls) == 2:
                os._exit(9)  # as SIGKILL: no clean-up runs
            real_replace(src, dst)
        def fsync(fd):
            os._exit(9)
        io.os.replace = replace
        if {when!r} == "writing":
            io.os.fsync = fsync
        model = BidirectionalAttention(AttentionConfig(vocab_size=9, max_len=2))
        model.save_pretrained({str(tmp_path / "m")!r})
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr


def test_a_save_killed_between_its_renames_is_recovered_at_the_next_load(tmp_path):
    BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=2)).save_pretrained(tmp_path / "m")
    _killed_save(tmp_path, "renames")
    assert not (tmp_path / "m").exists()  # the model is only under .m.old-PID
    assert any(p.name.startswith(".m.old-") for p in tmp_path.iterdir())
    with pytest.warns(UserWarning, match=r"found only as \.m\.old-\d+.*restored"):
        assert load_model(tmp_path / "m").config.vocab_size == 3
    assert [p.name for p in tmp_path.iterdir() if ".old-" in p.name] == []
    # and the next save cleans up the complete staging folder the killed one left
    BidirectionalAttention(AttentionConfig(vocab_size=4, max_len=2)).save_pretrained(tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_the_next_save_recovers_and_cleans_after_a_kill(tmp_path):
    BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=2)).save_pretrained(tmp_path / "m")
    _killed_save(tmp_path, "renames")
    with pytest.warns(UserWarning, match="restored"):  # a save finds it before replacing it
        BidirectionalAttention(AttentionConfig(vocab_size=5, max_len=2)).save_pretrained(
            tmp_path / "m"
        )
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    _killed_save(tmp_path, "writing")
    left = [p.name for p in tmp_path.iterdir() if p.name != "m"]
    assert len(left) == 1 and left[0].startswith(".m.tmp-")  # staged beside it, not in /tmp
    assert BidirectionalAttention.from_pretrained(tmp_path / "m").config.vocab_size == 5
    BidirectionalAttention(AttentionConfig(vocab_size=6, max_len=2)).save_pretrained(tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_failed_second_rename_puts_the_old_model_back(tmp_path, monkeypatch):
    BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=2)).save_pretrained(tmp_path / "m")
    real_replace, calls = io.os.replace, []

    def replace(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        BidirectionalAttention(AttentionConfig(vocab_size=9, max_len=2)).save_pretrained(
            tmp_path / "m"
        )
    monkeypatch.undo()
    assert load_model(tmp_path / "m").config.vocab_size == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_running_saves_folders_are_left_alone(tmp_path):
    """Staging and backup folders of a live process (another save in progress) stay."""
    import os

    (tmp_path / f".m.tmp-{os.getppid()}-abc").mkdir()
    (tmp_path / f".m.old-{os.getppid()}").mkdir()
    BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=2)).save_pretrained(tmp_path / "m")
    assert len(list(tmp_path.iterdir())) == 3


def test_a_save_stages_nothing_in_the_system_temp_folder(tmp_path, monkeypatch):
    # a save killed midway must leave no model-sized orphan outside the output's folder
    import tempfile

    folders = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(suffix=None, prefix=None, dir=None):
        folders.append(dir)
        return real_mkdtemp(suffix, prefix, dir)

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    out = tmp_path / "out" / "model"
    random_attention(0, vocab_size=9, max_len=4, d_model=8).save_pretrained(out)
    assert folders and all(d is not None and Path(d) == out.parent for d in folders)
