"""A fitted classifier's directory: ``classifier.json``, ``member_<k>/``, ``manifest.json``.

``classifier.json`` holds the parameters, the classes and their dtype, the
column encodings and ``mask_id_``; each ensemble member is a model directory
of its own (:mod:`attnmoe.model.io`). ``manifest.json`` lists every file with
its size and SHA-256 and the facts the files must agree on: each member's
vocabulary size, length and config hash, the classes and the encoder's
vocabulary sizes. Loading checks every field of ``classifier.json`` (types,
ranges, required keys) and the members against it and the manifest, so a
corrupt or mixed-up directory is a one-line :class:`ModelFileError`, never a
wrong prediction. The format is documented in docs/model_files.md.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..model import BidirectionalAttention
from ..model.io import (
    CONFIG_NAME,
    ModelFileError,
    UnverifiedModelWarning,
    atomic_directory,
    check_files,
    config_sha256,
    read_json,
    read_manifest,
    read_model_config,
    recover_directory,
    write_manifest,
)
from .encoding import ColumnCoding, TableEncoder
from .params import parse_estimator_params

CLASSIFIER_NAME = "classifier.json"
# 2: numeric columns (kind "numeric", "knots"); 1 and 0 hold "categorical" and "binned"
# columns only, and still load as they were saved
CLASSIFIER_FORMAT_VERSION = 2
_MEMBER = re.compile(r"^member_\d+$")
_MAX_CLASSES_BYTES = 1 << 28
# type tag of a saved label or category -> the Python type it comes back as
_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def _fail(file: Path, field: str, problem: str) -> NoReturn:
    raise ModelFileError(f"{file}: field {field!r} {problem}")


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


# ---------------------------------------------------------------------------
# writing


def _plain(value) -> list:
    """A label or category as JSON with a type tag, so its exact type comes back."""
    if isinstance(value, (bool, np.bool_)):
        return ["bool", bool(value)]
    if isinstance(value, (int, np.integer)):
        return ["int", int(value)]
    if isinstance(value, (float, np.floating)):
        return ["float", repr(float(value))]
    if isinstance(value, str):
        return ["str", value]
    raise TypeError(
        f"cannot save a category or class of type {type(value).__name__} "
        f"({value!r}); use str, int, float or bool labels"
    )


def _float_texts(values) -> list[str] | None:
    return None if values is None else [repr(float(v)) for v in values]


def _column_meta(coding: ColumnCoding) -> dict[str, Any]:
    meta = {
        "name": coding.name,
        "kind": coding.kind,
        "categories": [_plain(v) for v in coding.categories],
        "edges": _float_texts(coding.edges),
        "representatives": _float_texts(coding.representatives),
    }
    if coding.kind == "numeric":  # exact values (repr), as the edges
        meta["knots"] = _float_texts(coding.knots)
    return meta


def classifier_meta(clf) -> dict[str, Any]:
    """The content of ``classifier.json`` for a fitted classifier."""
    columns = [_column_meta(c) for c in clf.encoder_.columns_]
    params = clf.get_params()
    for name, value in params.items():  # e.g. np.int64 from a grid over np.arange
        if isinstance(value, np.generic):
            params[name] = value.item()
    if isinstance(params["random_state"], bool) or not isinstance(
        params["random_state"], (int, type(None))
    ):
        params["random_state"] = None  # a RandomState object is not data
    return {
        "model_type": type(clf).__name__,
        "format_version": CLASSIFIER_FORMAT_VERSION,
        "params": params,
        "classes": [str(c) for c in clf.classes_],
        "classes_dtype": clf.classes_.dtype.str,
        "classes_typed": [_plain(c) for c in clf.classes_],
        "encoder": {
            "n_bins": clf.encoder_.n_bins,
            "max_categories": clf.encoder_.max_categories,
            "columns": columns,
        },
        "n_features_in_": int(clf.n_features_in_),
        "feature_names_in_": (
            [str(c) for c in clf.feature_names_in_] if hasattr(clf, "feature_names_in_") else None
        ),
        "mask_id_": int(clf.mask_id_),
        "members": [f"member_{k}" for k in range(len(clf.models_))],
        "gate_baseline_": _baseline_meta(getattr(clf, "gate_baseline_", None)),
    }


def _baseline_meta(baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """``gate_baseline_`` for the JSON: numbers as text (exact), as the encoder's."""
    if baseline is None:
        return None
    return {
        "experts": list(baseline["experts"]),
        "overall": _float_texts(baseline["overall"]),
        "heads": [_float_texts(h) for h in baseline["heads"]],
        "n_rows": int(baseline["n_rows"]),
    }


def _baseline(data: Any, n_experts: int, file: Path) -> dict[str, Any] | None:
    """``gate_baseline_`` checked: None (saved before it existed) or the fitted attribute."""
    if data is None:
        return None
    field = "gate_baseline_"
    if not isinstance(data, dict) or set(data) != {"experts", "overall", "heads", "n_rows"}:
        _fail(file, field, "must be an object of experts, overall, heads and n_rows")
    experts = data["experts"]
    if not isinstance(experts, list) or len(experts) != n_experts:
        _fail(file, field, f"experts must list {n_experts} names (the columns and the target)")
    if not all(isinstance(e, str) for e in experts):
        _fail(file, field, "experts must be names (text)")
    if not _is_int(data["n_rows"], 0):
        _fail(file, field, f"n_rows must be an integer >= 0, got {data['n_rows']!r:.60}")
    if not isinstance(data["heads"], list) or not data["heads"]:
        _fail(file, field, "heads must be a non-empty list of per-head gates")
    overall = _floats(data["overall"], file, f"{field}.overall", n_experts)
    heads = [_floats(h, file, f"{field}.heads", n_experts) for h in data["heads"]]
    return {
        "experts": experts,
        "overall": overall.tolist(),
        "heads": [h.tolist() for h in heads],
        "n_rows": data["n_rows"],
    }


def _facts(meta: dict[str, Any], member_configs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the manifest records for the files to agree on."""
    return {
        "model_type": meta["model_type"],
        "members": [
            {
                "name": name,
                "vocab_size": config["vocab_size"],
                "max_len": config["max_len"],
                "config_sha256": config_sha256(config),
            }
            for name, config in zip(meta["members"], member_configs, strict=True)
        ],
        "classes": meta["classes_typed"],
        "encoder_vocab_sizes": [_n_codes(c) for c in meta["encoder"]["columns"]],
        "mask_id": meta["mask_id_"],
    }


def save_classifier(clf, directory: str | os.PathLike) -> Path:
    """Write a fitted classifier's directory atomically (manifest last)."""
    meta = classifier_meta(clf)
    target = Path(directory)
    with atomic_directory(target, marker=CLASSIFIER_NAME) as staging:
        for name, model in zip(meta["members"], clf.models_, strict=True):
            model.save_pretrained(staging / name)
        with open(staging / CLASSIFIER_NAME, "w") as fh:
            json.dump(meta, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        write_manifest(staging, _facts(meta, [m.config.to_dict() for m in clf.models_]))
    return target


# ---------------------------------------------------------------------------
# reading: every field checked before anything is built from it


def _typed(pair: Any, file: Path, field: str):
    """A ``[type tag, value]`` pair back as its value."""
    # the tag's type first: a list or object as tag is not hashable
    tag = pair[0] if isinstance(pair, list) and len(pair) == 2 else None
    if not isinstance(tag, str) or tag not in _TYPES:
        _fail(file, field, f"must be a [type, value] pair with a type of {list(_TYPES)}")
    kind, value = pair
    if kind == "float" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    elif kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind in ("bool", "str") and type(value) is _TYPES[kind]:
        return value
    _fail(file, field, f"holds {value!r}, not a {kind}")


def _floats(values: Any, file: Path, field: str, length: int | None = None) -> np.ndarray:
    """Finite numbers saved as text (``repr``, exact), as an array."""
    size = "" if length is None else f" of {length}"
    if (
        not isinstance(values, list)
        or (length is not None and len(values) != length)
        or not all(isinstance(v, str) for v in values)
    ):
        _fail(file, field, f"must be a list{size} of numbers written as text")
    try:
        array = np.array([float(v) for v in values], dtype=float)
    except ValueError:
        _fail(file, field, f"must be a list{size} of numbers written as text")
    if not np.isfinite(array).all():
        _fail(file, field, "must hold finite numbers")
    return array


def _n_codes(column: dict[str, Any]) -> int:
    if column["kind"] == "numeric":
        return len(column["knots"])
    return (
        len(column["categories"]) if column["kind"] == "categorical" else len(column["edges"]) + 1
    )


_KINDS = ("categorical", "binned", "numeric")


def _column(data: Any, file: Path, field: str) -> ColumnCoding:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        _fail(file, field, "must be an object with a text 'name'")
    kind = data.get("kind")
    if kind not in _KINDS:
        _fail(file, f"{field}.kind", f"must be one of {list(_KINDS)}, got {kind!r}")
    categories = data.get("categories")
    if not isinstance(categories, list) or (kind != "categorical" and categories):
        _fail(file, f"{field}.categories", f"must be a list (empty for a {kind} column)")
    values = [_typed(p, file, f"{field}.categories[{i}]") for i, p in enumerate(categories)]
    if kind == "numeric":
        return _numeric_column(data, file, field)
    if data.get("knots") is not None:
        _fail(file, f"{field}.knots", f"a {kind} column has no knots")
    edges = representatives = None
    if kind == "binned":
        edges = _floats(data.get("edges"), file, f"{field}.edges")
        if np.any(np.diff(edges) <= 0):
            _fail(file, f"{field}.edges", "must be increasing")
        representatives = _floats(
            data.get("representatives"), file, f"{field}.representatives", len(edges) + 1
        )
    elif data.get("edges") is not None or data.get("representatives") is not None:
        _fail(file, field, "a categorical column has no 'edges' or 'representatives'")
    return ColumnCoding(data["name"], kind, values, edges, representatives)


def _numeric_column(data: dict[str, Any], file: Path, field: str) -> ColumnCoding:
    if data.get("edges") is not None or data.get("representatives") is not None:
        _fail(file, field, "a numeric column has no 'edges' or 'representatives'")
    knots = _floats(data.get("knots"), file, f"{field}.knots")
    if np.any(np.diff(knots) <= 0):
        _fail(file, f"{field}.knots", "must be increasing")
    return ColumnCoding(data["name"], "numeric", knots=knots)


def _encoder(data: Any, file: Path) -> TableEncoder:
    if not isinstance(data, dict):
        _fail(file, "encoder", f"must be an object, got {data!r}")
    n_bins, max_categories = data.get("n_bins"), data.get("max_categories")
    if not _is_int(n_bins, 1):
        _fail(file, "encoder.n_bins", f"must be an integer >= 1, got {n_bins!r}")
    if not _is_int(max_categories, 0):
        _fail(file, "encoder.max_categories", f"must be an integer >= 0, got {max_categories!r}")
    columns = data.get("columns")
    if not isinstance(columns, list) or not columns:
        _fail(file, "encoder.columns", "must be a non-empty list")
    encoder = TableEncoder(n_bins, max_categories)
    encoder.columns_ = [_column(c, file, f"encoder.columns[{j}]") for j, c in enumerate(columns)]
    return encoder


def _classes(meta: dict[str, Any], file: Path) -> np.ndarray:
    pairs = meta["classes_typed"]
    if not isinstance(pairs, list) or not pairs:
        _fail(file, "classes_typed", "must be a non-empty list")
    classes = [_typed(p, file, f"classes_typed[{i}]") for i, p in enumerate(pairs)]
    if len({(type(c), c) for c in classes}) != len(classes):
        _fail(file, "classes_typed", "holds a class twice")
    tag = meta["classes_dtype"]
    try:
        dtype = np.dtype(tag) if isinstance(tag, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biufUO":
        _fail(file, "classes_dtype", f"must be a numpy dtype tag of labels, got {tag!r}")
    if dtype.itemsize * len(classes) > _MAX_CLASSES_BYTES:  # the array is allocated next
        _fail(file, "classes_dtype", f"{tag!r} is far wider than any label needs")
    try:
        array = np.array(classes, dtype=dtype)
    except (ValueError, OverflowError):
        array = None
    if array is None or (dtype.kind != "O" and array.tolist() != classes):
        _fail(file, "classes_dtype", f"{tag!r} cannot hold the classes {classes[:5]}")
    return array


_REQUIRED = {
    "model_type": str,
    "params": dict,
    "classes_typed": list,
    "classes_dtype": str,
    "encoder": dict,
    "n_features_in_": int,
    "mask_id_": int,
    "members": list,
}


def _check_fields(meta: Any, file: Path, model_type: str) -> None:
    if not isinstance(meta, dict):
        raise ModelFileError(f"{file} must hold a JSON object, got {type(meta).__name__}")
    for key, kind in _REQUIRED.items():
        if key not in meta:
            _fail(file, key, "is missing")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            _fail(file, key, f"must be a {kind.__name__}, got {meta[key]!r:.60}")
    if meta["model_type"] != model_type:
        raise ModelFileError(f"{file.parent} holds a {meta['model_type']}, not a {model_type}")
    version = meta.get("format_version", 0)
    if not _is_int(version, 0):
        _fail(file, "format_version", f"must be an integer, got {version!r}")
    if version > CLASSIFIER_FORMAT_VERSION:
        raise ModelFileError(f"{file.parent} uses a newer format; upgrade attnmoe")
    members = meta["members"]
    if not members or not all(isinstance(m, str) and _MEMBER.match(m) for m in members):
        _fail(file, "members", f"must be a non-empty list of member_<k> folders, got {members!r}")
    if len(set(members)) != len(members):
        _fail(file, "members", "names a folder twice")


def _check_consistent(meta: dict[str, Any], encoder: TableEncoder, n_classes: int, file: Path):
    """The fields against each other, as ``fit`` makes them."""
    n_features = meta["n_features_in_"]
    if n_features != len(encoder.columns_):
        _fail(file, "n_features_in_", f"is {n_features} but the encoder has "
              f"{len(encoder.columns_)} columns")  # fmt: skip
    names = meta.get("feature_names_in_")
    if names is not None and (
        not isinstance(names, list)
        or len(names) != n_features
        or not all(isinstance(n, str) for n in names)
    ):
        _fail(file, "feature_names_in_", f"must be null or {n_features} column names")
    expected = max(encoder.n_codes, n_classes)
    if meta["mask_id_"] != expected:
        _fail(file, "mask_id_", f"is {meta['mask_id_']}; the encoder and classes give {expected}")


def _check_members(meta: dict[str, Any], facts: dict[str, Any] | None, path: Path) -> None:
    """Each member a model of this classifier: its sizes, and the manifest's facts."""
    configs = []
    for name in meta["members"]:
        if not (path / name).exists() and not recover_directory(path / name):
            raise ModelFileError(
                f"{path}: {name}, listed in {CLASSIFIER_NAME} as a member, is missing"
            )
        member = read_model_config(path / name)
        config = member["config"]
        if member["model_type"] != BidirectionalAttention.__name__:
            raise ModelFileError(f"{path / name} holds a {member['model_type']}, not a member")
        sizes = (config.get("vocab_size"), config.get("max_len"))
        if sizes != (meta["mask_id_"], meta["n_features_in_"] + 1):
            raise ModelFileError(
                f"{path / name / CONFIG_NAME}: vocab_size, max_len are {sizes}, this classifier's "
                f"are {(meta['mask_id_'], meta['n_features_in_'] + 1)}: not one of its members"
            )
        configs.append(config)
    if facts is None:
        return
    mine = _facts(meta, configs)
    for key, value in mine.items():
        if facts.get(key) != value:
            raise ModelFileError(
                f"{path}: {key} in {CLASSIFIER_NAME} and the members differ from "
                f"manifest.json: the files come from different models"
            )


def read_classifier(directory: str | os.PathLike, model_type: str) -> dict[str, Any]:
    """``classifier.json`` checked field by field, against its members and the manifest.

    Returns the JSON with ``classes_``, ``encoder_`` (built from the checked
    fields) added.

    Raises
    ------
    ModelFileError
        Naming the file and the field, on anything malformed or inconsistent.
    """
    path = Path(directory)
    recover_directory(path)  # a save killed between its renames left it hidden
    file = path / CLASSIFIER_NAME
    if not file.is_file():
        raise ModelFileError(f"{path} has no {CLASSIFIER_NAME}; was it written by save_pretrained?")
    meta = read_json(file)
    _check_fields(meta, file, model_type)
    classes = _classes(meta, file)
    encoder = _encoder(meta["encoder"], file)
    _check_consistent(meta, encoder, len(classes), file)
    baseline = _baseline(meta.get("gate_baseline_"), meta["n_features_in_"] + 1, file)
    manifest = read_manifest(path)
    # the facts before the files: a member of another classifier is named as such
    _check_members(meta, None if manifest is None else manifest["facts"], path)
    if manifest is not None:
        check_files(path, manifest)
    return {**meta, "classes_": classes, "encoder_": encoder, "gate_baseline_": baseline}


def check_params(estimator: type, params: dict[str, Any], file: Path) -> dict[str, Any]:
    """Saved parameters: names of ``estimator``'s, values of the defaults' types."""
    try:
        return parse_estimator_params(json.dumps(params), f"{file}: field 'params'", estimator)
    except ValueError as err:
        raise ModelFileError(str(err)) from None


def restore_classifier(clf, meta: dict[str, Any], directory: str | os.PathLike):
    """Set ``clf``'s fitted attributes from :func:`read_classifier`'s result; load members."""
    path = Path(directory)
    clf.classes_ = meta["classes_"]
    clf.encoder_ = meta["encoder_"]
    clf.n_features_in_ = meta["n_features_in_"]
    if meta.get("feature_names_in_") is not None:
        clf.feature_names_in_ = np.asarray(meta["feature_names_in_"], dtype=object)
    clf.mask_id_ = meta["mask_id_"]
    if meta.get("gate_baseline_") is not None:  # older folders have none
        clf.gate_baseline_ = meta["gate_baseline_"]
    with warnings.catch_warnings():
        # verified by the classifier's manifest, or already warned about as unverifiable
        warnings.simplefilter("ignore", UnverifiedModelWarning)
        clf.models_ = [BidirectionalAttention.from_pretrained(path / m) for m in meta["members"]]
    clf.histories_ = []  # training curves are not part of a saved model
    return clf


__all__ = [
    "CLASSIFIER_NAME",
    "check_params",
    "classifier_meta",
    "read_classifier",
    "restore_classifier",
    "save_classifier",
]
