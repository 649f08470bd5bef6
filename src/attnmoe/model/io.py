"""Save and load models as ``config.json`` + ``model.safetensors`` (no pickle).

Every model directory also carries ``manifest.json``: each file's size and
SHA-256, and the facts other files must agree with (see docs/model_files.md).
Loading checks, in order: the JSON fields (types and ranges), the weights'
shapes and dtypes from the safetensors header against the config (so no size is
allocated unchecked), the manifest (sizes, then hashes), then the weights'
values (finite). A directory saved before manifests existed loads with an
:class:`UnverifiedModelWarning`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from .._version import __version__
from ..files import pid_alive as _pid_alive

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "attnmoe-manifest"
FORMAT_VERSION = 1

T = TypeVar("T", bound="PretrainedMixin")


class ModelFileError(ValueError):
    """A model directory is missing, corrupted or incompatible.

    The message is one line (a cause quoted from a library joins its lines), so
    the command line can print it as one ``error:`` line.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(line.strip() for line in str(message).splitlines()))


class UnverifiedModelWarning(UserWarning):
    """A model directory has no ``manifest.json`` (saved by an older attnmoe)."""


_CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def check_replaceable(directory: str | os.PathLike, marker: str) -> None:
    """Refuse to replace an existing non-empty folder that lacks ``marker``.

    Saving over a model folder replaces it whole; a folder without the format's
    marker file is not one of ours (a project folder given as the output by
    mistake) and is left alone.
    """
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    # desktop clutter does not make a folder someone's; anything else (.git, .env) does
    held = target.is_dir() and any(p.name not in _CLUTTER for p in target.iterdir())
    if held and not (target / marker).exists():
        raise FileExistsError(
            f"{target} exists, is not empty and holds no {marker}: not a saved model, so it "
            "is not replaced; choose another folder or remove it"
        )


def _leftovers(target: Path, kind: str) -> list[tuple[int, Path]]:
    """Hidden ``.NAME.<kind>-PID...`` entries beside ``target`` as ``(pid, path)``."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.{kind}-(\d+)(?:-.*)?$")
    if not target.parent.is_dir():
        return []
    found = []
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return found


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def recover_directory(directory: str | os.PathLike) -> Path | None:
    """Undo what a killed :func:`atomic_directory` left beside ``directory``.

    A save renames the old folder to ``.NAME.old-PID`` and then the new one to
    ``NAME``. Killed between the two, only the old model is left, under the hidden
    name: it is renamed back to ``NAME`` (with a one-line warning). Left over after
    a finished save (killed before its clean-up), it is removed. Only entries of
    processes no longer running on this machine are touched; a save in progress
    is left alone.

    Returns
    -------
    Path or None
        The folder restored as ``directory``, or None if there was nothing to restore.
    """
    target = Path(directory)
    backups = [(pid, p) for pid, p in _leftovers(target, "old") if not _pid_alive(pid)]
    restored = None
    if backups and not (target.exists() or target.is_symlink()):
        # the newest backup is the model the interrupted save was replacing
        pid, newest = max(backups, key=lambda item: item[1].lstat().st_mtime)
        os.replace(newest, target)
        backups.remove((pid, newest))
        restored = newest
        warnings.warn(
            f"{target} was found only as {newest.name} (a save was killed between its two "
            "renames): restored",
            UserWarning,
            stacklevel=2,
        )
    for _, path in backups:  # the new folder is in place: the old one was to be deleted
        _remove(path)
    return restored


def _remove_dead_staging(target: Path) -> None:
    """Delete ``.NAME.tmp-PID-*`` staging folders of processes that no longer run."""
    for pid, path in _leftovers(target, "tmp"):
        if not _pid_alive(pid):
            _remove(path)


@contextmanager
def atomic_directory(directory: str | os.PathLike, marker: str | None = None) -> Iterator[Path]:
    """Fill a staging folder, then make it ``directory`` in one rename.

    Use as ``with atomic_directory(path) as staging: write files into staging``.
    A crash or an exception inside the block leaves ``directory`` as it was (an
    existing one is only replaced once the new one is complete) and removes the
    staging folder. With ``marker``, an existing non-empty ``directory`` is only
    replaced if it holds that file (:func:`check_replaceable`), checked first.

    The staging folder (``.NAME.tmp-PID-*``) is made beside ``directory``, never in
    the system's temporary folder; those of killed processes are deleted at the
    next save, and a model a killed save left only as ``.NAME.old-PID`` is put
    back first (:func:`recover_directory`).
    """
    target = Path(directory)
    recover_directory(target)
    if marker is not None:
        check_replaceable(target, marker)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(target)
    prefix = f".{target.name}.tmp-{os.getpid()}-"
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        yield staging
        # mkdtemp makes folders private (0700); a model folder gets the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
            os.chmod(folder, 0o777 & ~umask)
        backup = None
        if target.exists() or target.is_symlink():
            backup = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, backup)
        try:
            os.replace(staging, target)
        except BaseException:
            if backup is not None:  # put the old model back: the save failed
                os.replace(backup, target)
            raise
        if backup is not None:  # a link goes, not the folder it points to
            _remove(backup)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_directory_atomically(
    directory: str | os.PathLike, files: dict[str, bytes], marker: str | None = None
) -> Path:
    """Write ``files`` (name -> bytes, each flushed to disk) as ``directory`` atomically.

    See :func:`atomic_directory`: staged beside ``directory``, renamed into place.
    """
    with atomic_directory(directory, marker) as staging:
        for name, data in files.items():
            with open(staging / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    return Path(directory)


# ---------------------------------------------------------------------------
# manifest: each file's size and SHA-256, and the facts other files must agree with

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 1 << 20


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def config_sha256(config: dict[str, Any]) -> str:
    """SHA-256 of a config dict in one canonical JSON spelling (keys sorted)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def model_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest facts of a model whose ``config.json`` holds ``meta``."""
    return {
        "model_type": meta["model_type"],
        "vocab_size": meta["config"]["vocab_size"],
        "max_len": meta["config"]["max_len"],
        "config_sha256": config_sha256(meta["config"]),
    }


def _manifest(entries: dict[str, dict[str, Any]], facts: dict[str, Any]) -> bytes:
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "attnmoe_version": __version__,
        "files": entries,
        "facts": facts,
    }
    return json.dumps(manifest, indent=2).encode()


def with_manifest(files: dict[str, bytes], facts: dict[str, Any]) -> dict[str, bytes]:
    """``files`` (name -> bytes) and a ``manifest.json`` describing them."""
    entries = {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in files.items()
    }
    return {**files, MANIFEST_NAME: _manifest(entries, facts)}


def write_manifest(directory: str | os.PathLike, facts: dict[str, Any]) -> Path:
    """Write ``manifest.json`` listing every file under ``directory`` (subfolders too).

    Call it last, once every other file of the model is written.
    """
    root = Path(directory)
    entries = {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": _sha256_file(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != MANIFEST_NAME
    }
    path = root / MANIFEST_NAME
    with open(path, "wb") as fh:
        fh.write(_manifest(entries, facts))
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; a missing or unreadable file is a :class:`ModelFileError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ModelFileError(f"{path} is missing") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path} is not valid JSON: {err}") from err
    except OSError as err:
        raise ModelFileError(f"cannot read {path}: {err}") from err


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _manifest_entries(path: Path, manifest: Any) -> dict[str, dict[str, Any]]:
    """The ``files`` of a manifest, every field checked."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ModelFileError(f"{path}: not an attnmoe manifest (field 'format')")
    version = manifest.get("format_version")
    if not _is_int(version, 1):
        raise ModelFileError(f"{path}: field 'format_version' must be a positive integer")
    if version > 1:
        raise ModelFileError(f"{path} uses manifest version {version}; upgrade attnmoe")
    entries = manifest.get("files")
    if not isinstance(entries, dict) or not entries:
        raise ModelFileError(f"{path}: field 'files' must be a non-empty object")
    if not isinstance(manifest.get("facts"), dict):
        raise ModelFileError(f"{path}: field 'facts' must be an object")
    for name, entry in entries.items():
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or "" in parts or "\\" in name:
            raise ModelFileError(f"{path}: field 'files' names {name!r}, not a file inside")
        if (
            not isinstance(entry, dict)
            or not _is_int(entry.get("size"))
            or not isinstance(entry.get("sha256"), str)
            or not _SHA256.match(entry["sha256"])
        ):
            raise ModelFileError(
                f"{path}: field 'files.{name}' must hold a 'size' and a hex 'sha256'"
            )
    return entries


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """``manifest.json`` of ``directory``, every field checked (the files not yet).

    Returns None, with an :class:`UnverifiedModelWarning`, when there is none
    (a directory saved before manifests existed).
    """
    root = Path(directory)
    path = root / MANIFEST_NAME
    if not path.exists():
        warnings.warn(
            f"{root} has no {MANIFEST_NAME} (saved by an older attnmoe): its files cannot "
            "be verified; save it again to add one",
            UnverifiedModelWarning,
            stacklevel=3,
        )
        return None
    manifest = read_json(path)
    _manifest_entries(path, manifest)
    return manifest


def check_files(directory: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Every file ``manifest`` lists: present, its size (all of them first), its SHA-256."""
    root = Path(directory)
    path = root / MANIFEST_NAME
    entries = manifest["files"]
    for name, entry in entries.items():  # sizes first: cheap, and they catch truncation
        file = root / name
        if not file.is_file():
            raise ModelFileError(f"{file} is missing ({path} lists it)")
        size = file.stat().st_size
        if size != entry["size"]:
            raise ModelFileError(
                f"{file} has {size} bytes, {path} says {entry['size']}: "
                "the file was truncated, changed or replaced"
            )
    for name, entry in entries.items():
        if _sha256_file(root / name) != entry["sha256"]:
            raise ModelFileError(
                f"{root / name} does not match its SHA-256 in {path}: "
                "the file was corrupted, changed or replaced"
            )


def verify_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """Check ``manifest.json`` and every file it lists; return its ``facts``.

    Returns
    -------
    dict or None
        The manifest's ``facts``; None (with an :class:`UnverifiedModelWarning`)
        when the directory has no manifest (saved before manifests existed).

    Raises
    ------
    ModelFileError
        If the manifest is malformed, or a file it lists is missing or differs.
    """
    manifest = read_manifest(directory)
    if manifest is None:
        return None
    check_files(directory, manifest)
    return manifest["facts"]


# ---------------------------------------------------------------------------
# a model directory: config.json, the safetensors header, the weights

# safetensors dtype tags -> torch dtype names (for messages)
_DTYPE_NAMES = {
    "F64": "torch.float64",
    "F32": "torch.float32",
    "F16": "torch.float16",
    "BF16": "torch.bfloat16",
    "I64": "torch.int64",
    "I32": "torch.int32",
    "I16": "torch.int16",
    "I8": "torch.int8",
    "U8": "torch.uint8",
    "BOOL": "torch.bool",
}
_FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})


def read_model_config(directory: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a model directory, its top-level fields checked."""
    path = Path(directory)
    recover_directory(path)  # a save killed between its renames left it hidden
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a model directory")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise ModelFileError(f"{path} has no {name}; was it written by save_pretrained?")
    file = path / CONFIG_NAME
    meta = read_json(file)
    if not isinstance(meta, dict) or "model_type" not in meta or "config" not in meta:
        got = type(meta).__name__ if not isinstance(meta, dict) else "an object without them"
        raise ModelFileError(f"{file} lacks 'model_type' or 'config' (got {got})")
    version = meta.get("format_version", 0)
    if not isinstance(meta["model_type"], str):
        raise ModelFileError(f"{file}: model_type must be text, got {meta['model_type']!r}")
    if not isinstance(meta["config"], dict):
        raise ModelFileError(f"{file}: 'model_type' must be text, 'config' an object")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(f"{file}: format_version must be an integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses format version {meta['format_version']}; this attnmoe reads "
            f"up to {FORMAT_VERSION}. Upgrade attnmoe."
        )
    return meta


def weights_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each tensor's safetensors dtype tag and shape, read from the header alone."""
    try:
        with safe_open(path, framework="pt") as fh:
            return {
                name: (fh.get_slice(name).get_dtype(), tuple(fh.get_slice(name).get_shape()))
                for name in fh.keys()
            }
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path} is corrupted: {err}") from err


def _expected_shapes(cls: type, config: Any, file: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of ``cls(config)``'s weights, built on the meta device (nothing allocated)."""
    try:
        with torch.device("meta"):
            model = cls(config)
    except (RuntimeError, TypeError, ValueError, OverflowError, MemoryError) as err:
        # torch's overflow messages run over many lines: the sizes say it all
        sizes = {k: v for k, v in vars(config).items() if isinstance(v, int)}
        raise ModelFileError(
            f"{file}: field 'config' describes no model that fits: {sizes}"
        ) from err
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _check_header(
    header: dict[str, tuple[str, tuple[int, ...]]], expected: dict[str, tuple[int, ...]], path: Path
) -> None:
    odd = sorted({_DTYPE_NAMES.get(d, d) for d, _ in header.values() if d not in _FLOAT_DTYPES})
    if odd:  # weights are floats; anything else is not a model this package wrote
        raise ModelFileError(f"{path / WEIGHTS_NAME} holds {odd} tensors, not float weights")
    missing = sorted(set(expected) - set(header))
    extra = sorted(set(header) - set(expected))
    wrong = [
        f"{name}: {list(header[name][1])} in {WEIGHTS_NAME}, {list(shape)} from the config"
        for name, shape in expected.items()
        if name in header and header[name][1] != shape
    ]
    if missing or extra or wrong:
        detail = "; ".join(
            [*wrong[:3], *([f"missing {missing[:3]}"] if missing else [])]
            + ([f"unexpected {extra[:3]}"] if extra else [])
        )
        raise ModelFileError(f"{path}: weights do not match the config: {detail}")


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, refused if any value is NaN or infinite."""
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path} is corrupted: {err}") from err
    for name, tensor in state.items():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:  # a model with NaN weights predicts nothing: every row the first class
            raise ModelFileError(
                f"{path}: tensor {name!r} holds {bad} non-finite values (NaN or infinity)"
            )
    return state


def _check_facts(facts: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    """The manifest's facts against ``config.json`` (the same model, not another's)."""
    mine = model_facts(meta)
    differ = sorted(k for k in mine if facts.get(k) != mine[k])
    if differ:
        raise ModelFileError(
            f"{path / CONFIG_NAME} disagrees with {path / MANIFEST_NAME} on {differ}: "
            "the files come from different models"
        )


def model_type_of(directory: str | os.PathLike) -> str:
    """The ``model_type`` recorded in a saved model directory."""
    return read_model_config(directory)["model_type"]


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for modules with a dataclass ``config``."""

    config_class: ClassVar[type]

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors`` and ``manifest.json`` atomically."""
        meta = {
            "model_type": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "attnmoe_version": __version__,
            "config": self.config.to_dict(),
        }
        # safetensors refuses shared or non-contiguous storage: store plain copies
        state = {k: v.detach().contiguous().clone() for k, v in self.state_dict().items()}
        # serialized in memory: a killed save leaves nothing in the system temp folder
        weights = save_safetensors(state)
        files = {CONFIG_NAME: json.dumps(meta, indent=2).encode(), WEIGHTS_NAME: weights}
        files = with_manifest(files, model_facts(meta))
        return write_directory_atomically(directory, files, marker=CONFIG_NAME)

    @classmethod
    def from_pretrained(cls: type[T], directory: str | os.PathLike) -> T:
        """Load a model written by :meth:`save_pretrained`.

        Raises
        ------
        ModelFileError
            If a field of ``config.json`` is malformed or out of range, the
            weights' shapes or dtypes are not the config's, a file differs from
            the manifest, or a weight is NaN or infinite. A directory without a
            manifest loads with an :class:`UnverifiedModelWarning`.
        """
        path = Path(directory)
        meta = read_model_config(path)
        if meta["model_type"] != cls.__name__:
            raise ModelFileError(
                f"{directory} holds a {meta['model_type']}, not a {cls.__name__}; "
                f"use attnmoe.load_model() to load any model type"
            )
        try:
            config = cls.config_class.from_dict(meta["config"])
        except (TypeError, ValueError) as err:
            raise ModelFileError(
                f"{path / CONFIG_NAME}: incompatible config (field 'config'): {err}"
            ) from err
        header = weights_header(path / WEIGHTS_NAME)
        _check_header(header, _expected_shapes(cls, config, path / CONFIG_NAME), path)
        manifest = read_manifest(path)
        if manifest is not None:  # the facts first: the clearer message for a mix-up
            _check_facts(manifest["facts"], meta, path)
            check_files(path, manifest)
        state = load_weights(path / WEIGHTS_NAME)
        model = cls(config)
        dtypes = {t.dtype for t in state.values()}
        if len(dtypes) == 1:
            model.to(dtypes.pop())
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFileError(f"{directory}: weights do not match the config: {err}") from err
        return model.eval()
