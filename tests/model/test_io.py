"""save_pretrained / from_pretrained round trips and their failure modes."""

import json

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
