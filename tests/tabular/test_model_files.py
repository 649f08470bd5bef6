"""A saved classifier's directory verifies itself: schema, members, manifest, finite weights.

Each corruption of issue 23 is a one-line ModelFileError naming the file (and
the field) through the API, and a one-line ``error:`` with exit 2 through
``attnmoe predict``: never a traceback, never a prediction from a broken model.
"""

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from attnmoe import load_model
from attnmoe.cli import main
from attnmoe.model.io import ModelFileError, UnverifiedModelWarning, write_manifest
from attnmoe.tabular import AttentionMoEClassifier

FAST = dict(epochs=3, batch_size=256, learning_rate=1e-2, n_ensembles=2, random_state=0)


def _table(n=120, seed=0, extra=False):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "colour": rng.choice(["red", "green", "blue"], n),
            "size": rng.integers(0, 4, n),
            "weight": rng.normal(size=n).round(3),
        }
    )
    if extra:
        frame["more"] = rng.integers(0, 2, n)
    return frame


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """This classifier, a twin fitted with another seed, one on other columns, one wider."""
    root = tmp_path_factory.mktemp("models")
    X = _table()
    y = np.where(X["size"] > 1, "big", "small")
    AttentionMoEClassifier(**FAST).fit(X, y).save_pretrained(root / "model")
    AttentionMoEClassifier(**{**FAST, "random_state": 1}).fit(X, y).save_pretrained(root / "twin")
    X_other = _table(extra=True)
    AttentionMoEClassifier(**FAST).fit(X_other, y).save_pretrained(root / "other")
    AttentionMoEClassifier(**{**FAST, "d_model": 10}).fit(X, y).save_pretrained(root / "wide")
    X.to_csv(root / "data.csv", index=False)
    return root


@pytest.fixture()
def model(saved_models, tmp_path):
    """A fresh copy of the saved classifier (and its siblings) to corrupt."""
    shutil.copytree(saved_models, tmp_path / "models")
    return tmp_path / "models" / "model"


def _edit_json(name, edit, resign=False):
    """Edit a JSON file; ``resign``: rewrite the manifest to match, as a hand edit
    with the manifest redone would (the field checks must not rely on the hashes)."""

    def corrupt(path):
        meta = json.loads((path / name).read_text())
        edit(meta)
        (path / name).write_text(json.dumps(meta))
        if resign:
            facts = json.loads((path / "manifest.json").read_text())["facts"]
            write_manifest(path, facts)

    return corrupt


def _nan_weights(path):
    state = load_file(path / "member_0" / "model.safetensors")
    state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    save_file(state, path / "member_0" / "model.safetensors")


def _member_from(other):
    def corrupt(path):
        shutil.rmtree(path / "member_0")
        shutil.copytree(path.parent / other / "member_0", path / "member_0")

    return corrupt


def _flip_byte(file, offset=-5):
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x01
    file.write_bytes(bytes(data))


def _truncate(path):
    weights = path / "member_1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16])


def _drop_manifests(path):
    for manifest in path.rglob("manifest.json"):
        manifest.unlink()


CORRUPTIONS = {
    # name: (corrupt(path), regex of the one-line message)
    "nan weights": (_nan_weights, r"member_0/model\.safetensors does not match its SHA-256"),
    "members []": (
        _edit_json("classifier.json", lambda m: m.update(members=[])),
        r"classifier\.json: field 'members' must be a non-empty list",
    ),
    "member of a twin classifier": (
        _member_from("twin"),
        r"member_0/\S+ does not match its SHA-256",
    ),
    "member of a classifier on other columns": (
        _member_from("other"),
        r"member_0/config\.json: vocab_size, max_len are .* not one of its members",
    ),
    "member of a wider classifier": (
        _member_from("wide"),
        r"members in classifier\.json and the members differ from manifest\.json",
    ),
    "null json": (
        lambda p: (p / "classifier.json").write_text("null"),
        r"classifier\.json must hold a JSON object",
    ),
    "missing encoder": (
        _edit_json("classifier.json", lambda m: m.pop("encoder")),
        r"classifier\.json: field 'encoder' is missing",
    ),
    "unknown parameter": (
        _edit_json("classifier.json", lambda m: m["params"].update(flavour=1), resign=True),
        r"classifier\.json: field 'params': \['flavour'\] are not parameters",
    ),
    "mistyped parameter": (
        _edit_json("classifier.json", lambda m: m["params"].update(epochs="x"), resign=True),
        r"classifier\.json: field 'params': epochs must be a number",
    ),
    "bad type tag": (
        _edit_json("classifier.json", lambda m: m["classes_typed"][0].__setitem__(0, "complex")),
        r"classifier\.json: field 'classes_typed\[0\]' must be a \[type, value\] pair",
    ),
    "bad dtype tag": (
        _edit_json("classifier.json", lambda m: m.update(classes_dtype="<X9")),
        r"classifier\.json: field 'classes_dtype' must be a numpy dtype tag",
    ),
    "dtype wider than memory": (
        _edit_json("classifier.json", lambda m: m.update(classes_dtype="<U200000000")),
        r"classifier\.json: field 'classes_dtype' '<U200000000' is far wider than any label",
    ),
    "dtype too short for the classes": (
        _edit_json("classifier.json", lambda m: m.update(classes_dtype="<U1")),
        r"classifier\.json: field 'classes_dtype' '<U1' cannot hold the classes",
    ),
    "bad category tag": (
        _edit_json(
            "classifier.json",
            lambda m: m["encoder"]["columns"][0]["categories"][0].__setitem__(1, 3),
        ),
        r"field 'encoder\.columns\[0\]\.categories\[0\]' holds 3, not a str",
    ),
    "unsorted knots": (
        _edit_json("classifier.json", lambda m: m["encoder"]["columns"][2]["knots"].reverse()),
        r"field 'encoder\.columns\[2\]\.knots' must be increasing",
    ),
    "knots on a categorical column": (
        _edit_json("classifier.json", lambda m: m["encoder"]["columns"][0].update(knots=["1"])),
        r"field 'encoder\.columns\[0\]\.knots' a categorical column has no knots",
    ),
    "huge mask_id_": (
        _edit_json("classifier.json", lambda m: m.update(mask_id_=10**13)),
        r"classifier\.json: field 'mask_id_' is 10000000000000; the encoder and classes give",
    ),
    "huge vocab_size": (
        _edit_json("member_0/config.json", lambda m: m["config"].update(vocab_size=10**13)),
        r"member_0/config\.json: vocab_size, max_len are \(10000000000000, 4\)",
    ),
    "missing member": (
        lambda p: shutil.rmtree(p / "member_1"),
        r"model: member_1, listed in classifier\.json as a member, is missing",
    ),
    "truncated": (_truncate, r"member_1/model\.safetensors has \d+ bytes, .* says \d+"),
    "flipped byte": (
        lambda p: _flip_byte(p / "member_0" / "model.safetensors"),
        r"member_0/model\.safetensors does not match its SHA-256",
    ),
    "flipped byte in classifier.json": (
        lambda p: (p / "classifier.json").write_text(
            (p / "classifier.json").read_text().replace('"n_bins": 10', '"n_bins": 11')
        ),
        r"classifier\.json does not match its SHA-256",
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_a_one_line_model_file_error(model, name):
    corrupt, message = CORRUPTIONS[name]
    corrupt(model)
    with pytest.raises(ModelFileError, match=message) as caught:
        AttentionMoEClassifier.from_pretrained(model)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_a_one_line_predict_error(model, name, capsys):
    CORRUPTIONS[name][0](model)
    data = model.parent / "data.csv"
    out = model.parent / "out.csv"
    assert main(["predict", str(model), str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "name", ["nan weights", "member of a twin classifier", "flipped byte in classifier.json"]
)
def test_without_manifests_what_can_be_checked_still_is(model, name):
    """An old directory: NaN weights are refused; a twin's member or an edit go unseen."""
    CORRUPTIONS[name][0](model)
    _drop_manifests(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedModelWarning)
        if name == "nan weights":
            with pytest.raises(ModelFileError, match=r"non-finite values \(NaN or infinity\)"):
                AttentionMoEClassifier.from_pretrained(model)
        else:
            AttentionMoEClassifier.from_pretrained(model)  # nothing to tell it by


def test_an_old_directory_without_manifests_loads_with_one_warning(
    saved_models, model, capsys, tmp_path
):
    X = _table(seed=1)
    reference = AttentionMoEClassifier.from_pretrained(saved_models / "model")
    _drop_manifests(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = AttentionMoEClassifier.from_pretrained(model)
    assert [type(w.message) for w in caught] == [UnverifiedModelWarning]  # not one per member
    assert "cannot be verified" in str(caught[0].message)
    np.testing.assert_array_equal(old.predict_proba(X), reference.predict_proba(X))

    out = tmp_path / "out.csv"
    assert main(["predict", str(model), str(saved_models / "data.csv"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "cannot be verified" in err
    assert len(pd.read_csv(out)) == len(_table())


def test_a_saved_classifier_loads_silently_and_its_manifest_holds_the_facts(saved_models):
    path = saved_models / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = AttentionMoEClassifier.from_pretrained(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "classifier.json",
        "member_0/config.json",
        "member_0/manifest.json",
        "member_0/model.safetensors",
        "member_1/config.json",
        "member_1/manifest.json",
        "member_1/model.safetensors",
    ]
    facts = manifest["facts"]
    assert [m["name"] for m in facts["members"]] == ["member_0", "member_1"]
    assert {(m["vocab_size"], m["max_len"]) for m in facts["members"]} == {(clf.mask_id_, 4)}
    assert facts["classes"] == [["str", "big"], ["str", "small"]]
    assert facts["encoder_vocab_sizes"] == [c.n_codes for c in clf.encoder_.columns_]


def test_load_model_names_a_classifier_folder_and_its_loader(saved_models):
    with pytest.raises(ModelFileError) as caught:
        load_model(saved_models / "model")
    message = str(caught.value)
    assert "holds a tabular classifier" in message and "\n" not in message
    assert "AttentionMoEClassifier.from_pretrained" in message
    assert "save_pretrained" not in message
