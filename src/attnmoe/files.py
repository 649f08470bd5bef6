"""Files written whole or not at all, and the temporary files a killed write leaves.

A file is written to a temporary file in its destination's own folder
(``.NAME.PID.XXXX.tmp``, tagged with the writing process's id) and renamed into
place, so an interrupted or failed write leaves the old file as it was. A
process killed outright (SIGKILL) cannot remove its temporary file; the next
write beside the same output removes those of processes that no longer run.
Used by the library's own writers and by the command line; it prints nothing.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

PathLike = str | os.PathLike


def pid_alive(pid: int) -> bool:
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


def _stale_pattern(target: Path) -> re.Pattern[str]:
    # mkstemp's random part holds no dot, so another output's temporary files never match
    return re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[^.]+\.tmp$")


def remove_stale_temps(path: PathLike) -> list[Path]:
    """Delete the ``.NAME.PID.*.tmp`` files beside ``path`` of processes no longer running.

    Returns
    -------
    list of Path
        The files removed; those of running processes (a write in progress) are kept.
    """
    target = Path(path)
    if not target.parent.is_dir():
        return []
    pattern = _stale_pattern(target)
    removed = []
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_file() and not pid_alive(int(match.group(1))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _private_to_usual(path: str) -> None:
    """mkstemp makes the file private (0600); give it the permissions a plain open would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextmanager
def staged_path(path: PathLike) -> Iterator[Path]:
    """A temporary file name beside ``path``, renamed to ``path`` when the block succeeds.

    ``with staged_path(out) as tmp: write into tmp``. The file is
    ``.NAME.PID.XXXX.tmp`` in ``path``'s own folder (made if missing), so the
    rename is atomic; if the block or the rename fails, it is removed and an
    existing ``path`` is left as it was. Temporary files of dead processes beside
    ``path`` are removed first (see :func:`remove_stale_temps`).

    Raises
    ------
    IsADirectoryError
        If ``path`` is a folder.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    prefix = f".{target.name}.{os.getpid()}."
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".tmp")
    os.close(fd)
    try:
        yield Path(staging)
        _private_to_usual(staging)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def write_atomically(path: PathLike, write: Callable[[IO], None], *, binary: bool = False) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file is opened as UTF-8 text without newline translation unless
    ``binary``, and synced to disk before the rename; see :func:`staged_path`.
    """
    kwargs = {} if binary else {"encoding": "utf-8", "newline": ""}
    with staged_path(path) as staging:
        with open(staging, "wb" if binary else "w", **kwargs) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text_atomically(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all; see :func:`write_atomically`."""
    return write_atomically(path, lambda fh: fh.write(text))


__all__ = [
    "pid_alive",
    "remove_stale_temps",
    "staged_path",
    "write_atomically",
    "write_text_atomically",
]
