"""Model directories carry their own integrity: manifest.json, checked fields, finite weights.

Each corruption is a one-line ModelFileError through the API and a one-line
``error:`` with exit 2 through the CLI, never a traceback nor a silent load.
"""

import json
import shutil
import warnings

import pytest
import torch
from safetensors.torch import save_file

from attnmoe import AttentionConfig, BidirectionalAttention, ModelFileError, load_model
from attnmoe.cli import main
from attnmoe.model import io
from attnmoe.model.io import UnverifiedModelWarning
from attnmoe.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

from .helpers import random_attention


@pytest.fixture()
def saved(tmp_path):
    """A saved attention model and its folder."""
    model = random_attention(0, vocab_size=5, max_len=3, d_model=4, n_heads=2, block="bert")
    model.save_pretrained(tmp_path / "m")
    return model, tmp_path / "m"


def _config(path):
    return json.loads((path / "config.json").read_text())


def _write_config(path, meta):
    (path / "config.json").write_text(json.dumps(meta))


def _nan_weights(path):
    """Rewrite model.safetensors with the same header (names, dtypes, shapes), NaN values."""
    state = io.load_file(path / "model.safetensors")
    save_file({k: torch.full_like(v, float("nan")) for k, v in state.items()},
              path / "model.safetensors")  # fmt: skip


def _flip_byte(file, offset=-5):
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x01
    file.write_bytes(bytes(data))


def _drop_manifests(path):
    for manifest in path.rglob("manifest.json"):
        manifest.unlink()


def _set_config(field, value):
    def corrupt(path):
        meta = _config(path)
        meta["config"][field] = value
        _write_config(path, meta)

    return corrupt


def _drop_config(field):
    def corrupt(path):
        meta = _config(path)
        del meta["config"][field]
        _write_config(path, meta)

    return corrupt


def _truncate(path):
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16])  # the header intact, the data cut


def _swap_weights(path):
    other = random_attention(1, vocab_size=5, max_len=3, d_model=4, n_heads=2, block="bert")
    other.save_pretrained(path.parent / "other")
    shutil.copy(path.parent / "other" / "model.safetensors", path / "model.safetensors")


def _swap_config(path):
    other = random_attention(0, vocab_size=5, max_len=3, d_model=4, n_heads=2, block="bert")
    other.config.dropout = 0.25  # same shapes, another model
    other.save_pretrained(path.parent / "other")
    shutil.copy(path.parent / "other" / "config.json", path / "config.json")


CORRUPTIONS = {
    # name: (corrupt(path), regex the one-line message must match)
    "nan weights": (_nan_weights, r"model\.safetensors does not match its SHA-256"),
    "null json": (lambda p: (p / "config.json").write_text("null"), r"config\.json lacks"),
    "missing field": (_drop_config("max_len"), r"config\.json.*missing.*\['max_len'\]"),
    "unknown parameter": (_set_config("flavour", 1), r"config\.json.*unknown.*\['flavour'\]"),
    "bad type": (_set_config("d_model", "4"), r"config\.json.*d_model must be a positive"),
    "out of range": (_set_config("dropout", 2.0), r"config\.json.*dropout must be in"),
    "huge vocab_size": (_set_config("vocab_size", 10**13), r"weights do not match the config"),
    "absurd vocab_size": (_set_config("vocab_size", 10**40), r"config\.json.*describes no model"),
    "truncated": (_truncate, r"model\.safetensors is corrupted"),
    "flipped byte": (lambda p: _flip_byte(p / "model.safetensors"), r"does not match its SHA"),
    "weights of another model": (_swap_weights, r"model\.safetensors does not match its SHA"),
    "config of another model": (_swap_config, r"disagrees with .*manifest\.json"),
    "manifest null": (lambda p: (p / "manifest.json").write_text("null"), r"not an attnmoe"),
    "weights missing": (
        lambda p: (p / "model.safetensors").rename(p / "weights.bak"),
        r"has no model\.safetensors",
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_a_one_line_model_file_error(saved, name):
    _, path = saved
    corrupt, message = CORRUPTIONS[name]
    corrupt(path)
    with pytest.raises(ModelFileError, match=message) as caught:
        load_model(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_a_one_line_cli_error(saved, name, capsys):
    _, path = saved
    CORRUPTIONS[name][0](path)
    code = main(["convert", str(path), str(path.parent / "converted")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (path.parent / "converted").exists()


def test_nan_weights_are_refused_without_a_manifest_too(saved):
    _, path = saved
    _drop_manifests(path)
    _nan_weights(path)
    with (
        pytest.warns(UnverifiedModelWarning),
        pytest.raises(ModelFileError, match=r"non-finite values \(NaN or infinity\)"),
    ):
        BidirectionalAttention.from_pretrained(path)


def test_infinite_weights_are_refused(saved):
    _, path = saved
    state = io.load_file(path / "model.safetensors")
    state["output.bias"][0] = float("inf")
    save_file(state, path / "model.safetensors")
    (path / "manifest.json").unlink()
    with pytest.warns(UnverifiedModelWarning), pytest.raises(ModelFileError, match="1 non-finite"):
        load_model(path)


def test_a_huge_size_is_refused_before_anything_is_allocated(saved, monkeypatch):
    _, path = saved
    _set_config("vocab_size", 10**13)(path)
    built = []
    original = BidirectionalAttention.__init__

    def spy(self, config):
        built.append(torch.empty(0).device.type)  # the device models are built on
        original(self, config)

    monkeypatch.setattr(BidirectionalAttention, "__init__", spy)
    with pytest.raises(ModelFileError, match=r"\[6, 4\] in model\.safetensors"):
        load_model(path)
    assert built == ["meta"]  # only ever on the meta device: no memory behind it


def test_an_old_directory_without_manifest_loads_with_one_warning(saved, capsys):
    model, path = saved
    (path / "manifest.json").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(path)
    assert [type(w.message) for w in caught] == [UnverifiedModelWarning]
    assert "cannot be verified" in str(caught[0].message)
    x = torch.randint(0, 5, (2, 3))
    assert torch.equal(loaded.masked_log_probs(x), model.eval().masked_log_probs(x))

    assert main(["convert", str(path), str(path.parent / "experts")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "cannot be verified" in err
    assert (path.parent / "experts" / "manifest.json").is_file()  # a save adds one


def test_the_manifest_records_sizes_hashes_and_facts(saved):
    model, path = saved
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "attnmoe-manifest"
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors"]
    for name, entry in manifest["files"].items():
        assert entry["size"] == (path / name).stat().st_size
    assert manifest["facts"] == {
        "model_type": "BidirectionalAttention",
        "vocab_size": 5,
        "max_len": 3,
        "config_sha256": io.config_sha256(model.config.to_dict()),
    }


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"size": -1, "sha256": "0" * 64}, "must hold a 'size' and a hex 'sha256'"),
        ({"size": 3, "sha256": "xyz"}, "must hold a 'size' and a hex 'sha256'"),
        (None, "must hold a 'size'"),
    ],
)
def test_a_malformed_manifest_entry_names_the_field(saved, entry, message):
    _, path = saved
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["config.json"] = entry
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"manifest\.json: field 'files\.config\.json'"):
        load_model(path)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_a_manifest_cannot_point_outside_its_folder(saved):
    _, path = saved
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["../secret"] = {"size": 0, "sha256": "0" * 64}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="not a file inside"):
        load_model(path)


def test_a_checkpoint_carries_a_manifest_and_a_corrupt_one_is_refused(tmp_path):
    model = BidirectionalAttention(AttentionConfig(vocab_size=4, max_len=3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    path = save_checkpoint(tmp_path, 1, model, opt, {"step": 1})
    manifest = json.loads((path / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checkpoint verifies without a warning
        assert load_checkpoint(path, model, opt)["step"] == 1
    _flip_byte(path / "optimizer.safetensors")
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors does not match"):
        load_checkpoint(path, model, opt)
