"""Save and load models as ``config.json`` + ``model.safetensors`` (no pickle)."""

from __future__ import annotations

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

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._version import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1

T = TypeVar("T", bound="PretrainedMixin")


class ModelFileError(ValueError):
    """A model directory is missing, corrupted or incompatible."""


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


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


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


def read_model_directory(directory: str | os.PathLike) -> tuple[dict[str, Any], dict]:
    """Read and validate ``config.json`` and the safetensors weights of a model directory."""
    path = Path(directory)
    recover_directory(path)  # a save killed between its renames left it hidden
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a model directory")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise ModelFileError(f"{path} has no {name}; was it written by save_pretrained?")
    try:
        meta = json.loads((path / CONFIG_NAME).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{path / CONFIG_NAME} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or "model_type" not in meta or "config" not in meta:
        raise ModelFileError(f"{path / CONFIG_NAME} lacks 'model_type' or 'config'")
    version = meta.get("format_version", 0)
    if not isinstance(meta["model_type"], str) or not isinstance(meta["config"], dict):
        raise ModelFileError(f"{path / CONFIG_NAME}: 'model_type' must be text, 'config' an object")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(f"{path / CONFIG_NAME}: format_version must be an integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses format version {meta['format_version']}; this attnmoe reads "
            f"up to {FORMAT_VERSION}. Upgrade attnmoe."
        )
    try:
        state = load_file(path / WEIGHTS_NAME)
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path / WEIGHTS_NAME} is corrupted: {err}") from err
    odd = sorted({str(t.dtype) for t in state.values() if not t.is_floating_point()})
    if odd:  # weights are floats; anything else is not a model this package wrote
        raise ModelFileError(f"{path / WEIGHTS_NAME} holds {odd} tensors, not float weights")
    return meta, state


def model_type_of(directory: str | os.PathLike) -> str:
    """The ``model_type`` recorded in a saved model directory."""
    recover_directory(directory)
    if not Path(directory).is_dir():
        raise ModelFileError(f"{directory} is not a model directory")
    path = Path(directory) / CONFIG_NAME
    try:
        kind = json.loads(path.read_text())["model_type"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ModelFileError(f"cannot read model_type from {path}: {err}") from err
    if not isinstance(kind, str):
        raise ModelFileError(f"{path}: model_type must be text, got {kind!r}")
    return kind


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for modules with a dataclass ``config``."""

    config_class: ClassVar[type]

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` atomically."""
        meta = {
            "model_type": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "attnmoe_version": __version__,
            "config": self.config.to_dict(),
        }
        # safetensors refuses shared or non-contiguous storage: store plain copies
        state = {k: v.detach().contiguous().clone() for k, v in self.state_dict().items()}
        with tempfile.TemporaryDirectory() as tmp:
            save_file(state, os.path.join(tmp, WEIGHTS_NAME))
            weights = Path(tmp, WEIGHTS_NAME).read_bytes()
        files = {CONFIG_NAME: json.dumps(meta, indent=2).encode(), WEIGHTS_NAME: weights}
        return write_directory_atomically(directory, files, marker=CONFIG_NAME)

    @classmethod
    def from_pretrained(cls: type[T], directory: str | os.PathLike) -> T:
        """Load a model written by :meth:`save_pretrained`."""
        meta, state = read_model_directory(directory)
        if meta["model_type"] != cls.__name__:
            raise ModelFileError(
                f"{directory} holds a {meta['model_type']}, not a {cls.__name__}; "
                f"use attnmoe.load_model() to load any model type"
            )
        try:
            config = cls.config_class.from_dict(meta["config"])
        except (TypeError, ValueError) as err:
            raise ModelFileError(f"{directory}: incompatible config: {err}") from err
        model = cls(config)
        dtypes = {t.dtype for t in state.values()}
        if len(dtypes) == 1:
            model.to(dtypes.pop())
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelFileError(f"{directory}: weights do not match the config: {err}") from err
        return model.eval()
