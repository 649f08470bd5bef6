"""Where commands write: never over their own inputs, always whole or not at all.

Every command that writes a file or a folder first calls :func:`check_output`
with what it reads: an output that is one of its inputs, lies inside a model
folder it reads, or is a folder holding one of its inputs is refused in one
line before any work is done. Files are then written through a temporary file
in the destination's own folder and renamed into place (:func:`write_text`,
:func:`write_bytes`, :func:`write_csv`; the mechanism is :mod:`attnmoe.files`),
so an interrupted or failed write leaves the old file as it was; a replaced
file is said in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pandas as pd

from .. import files

PathLike = str | os.PathLike


def _real(path: PathLike) -> Path:
    # realpath follows links and "..": two spellings of one file compare equal
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(
    out: PathLike,
    *,
    inputs: Iterable[PathLike | None] = (),
    model_dirs: Iterable[PathLike | None] = (),
    folder: bool = False,
    option: str = "--out",
    dir_kind: str = "model folder",
) -> Path:
    """Refuse an output that would overwrite what the command reads.

    Parameters
    ----------
    out
        The file or folder the command will write.
    inputs
        Files (or folders) the command reads; ``None`` entries are skipped.
        ``out`` may not be one of them, nor (a folder output) hold one.
    model_dirs
        Model folders the command reads; ``out`` may not be one of them, lie
        inside one, or (a folder output) hold one.
    folder
        Whether ``out`` is a folder the command replaces whole (a model); a file
        output may not be an existing folder.
    option
        The option that named ``out``, for the message.
    dir_kind
        What the ``model_dirs`` are, for the message (``"checkpoint folder"``).

    Returns
    -------
    Path
        ``out`` as a path.

    Raises
    ------
    ValueError
        One line naming the clash.
    """
    if not folder and str(out).endswith(tuple(filter(None, (os.sep, os.altsep)))):
        # Path() would drop the separator and write a file by the folder's name
        raise IsADirectoryError(f"{option} {out} names a folder; give a file name")
    target = _real(out)
    if not folder and target.is_dir():
        raise IsADirectoryError(f"{option} {out} is a folder; give a file name")
    for given in inputs:
        if given is None:
            continue
        source = _real(given)
        if target == source:
            raise ValueError(f"{option} {out} is the input {given}: choose another name")
        if folder and _inside(source, target):
            raise ValueError(f"{option} {out} holds the input {given}: choose another name")
    for given in model_dirs:
        if given is None:
            continue
        model = _real(given)
        if _inside(target, model):
            raise ValueError(
                f"{option} {out} is inside the {dir_kind} {given} this command reads: "
                "choose a path outside it"
            )
        if folder and _inside(model, target):
            raise ValueError(f"{option} {out} holds the {dir_kind} {given}: choose another")
    return Path(out)


def write_atomically(
    path: PathLike, write: Callable[[IO], None], *, binary: bool = False, quiet: bool = False
) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``.

    :func:`attnmoe.files.write_atomically`; unless ``quiet``, a replaced file is
    said in one line (``replaced PATH``).
    """
    replaced = say_replaced(Path(path))
    files.write_atomically(path, write, binary=binary)
    if not quiet:
        replaced()
    return Path(path)


def write_text(path: PathLike, text: str, *, quiet: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`write_atomically`."""
    return write_atomically(path, lambda fh: fh.write(text), quiet=quiet)


def write_bytes(path: PathLike, data: bytes, *, quiet: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; see :func:`write_atomically`."""
    return write_atomically(path, lambda fh: fh.write(data), binary=True, quiet=quiet)


def write_csv(frame: pd.DataFrame, path: PathLike, *, quiet: bool = False) -> Path:
    """Write ``frame`` (without its index) to ``path`` atomically."""
    return write_atomically(path, lambda fh: frame.to_csv(fh, index=False), quiet=quiet)


@contextmanager
def staged_path(path: PathLike, *, quiet: bool = False) -> Iterator[Path]:
    """A temporary file name beside ``path``, renamed to ``path`` when the block succeeds.

    :func:`attnmoe.files.staged_path`, for outputs a library function writes
    itself given a file name: ``with staged_path(out) as tmp: write_report(..., tmp)``.
    Unless ``quiet``, a replaced file is said in one line.
    """
    replaced = say_replaced(Path(path))
    with files.staged_path(path) as staging:
        yield staging
    if not quiet:
        replaced()


def say_replaced(path: PathLike) -> Callable[[], None]:
    """Note whether ``path`` exists now; the returned call prints ``replaced PATH`` if it did.

    For outputs written by the library itself (model folders, benchmark folders).
    """
    existed = Path(path).exists()

    def done() -> None:
        if existed:
            print(f"replaced {path}")

    return done


__all__ = [
    "check_output",
    "say_replaced",
    "staged_path",
    "write_atomically",
    "write_bytes",
    "write_csv",
    "write_text",
]
