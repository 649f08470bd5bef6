"""Training checkpoints that survive a kill: model, optimizer, data position (no pickle).

A checkpoint is a directory ``<checkpoint_dir>/step-<9 digits>/`` holding

- ``config.json`` + ``model.safetensors``: a complete model directory, so
  :func:`attnmoe.load_model` opens any checkpoint;
- ``optimizer.safetensors``: every tensor of the optimizer state, flattened to
  ``state.<param index>.<name>``;
- ``trainer_state.json``: the optimizer's hyper-parameters and scalar state,
  and the trainer's position (step, seed, batch geometry, loss history);
- ``manifest.json``: each file's size and SHA-256, checked on load.

Each checkpoint is written with
:func:`~attnmoe.model.io.write_directory_atomically`: a kill at any moment
leaves either the complete new checkpoint or none, never a torn one, so the
latest directory that exists is always safe to resume from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from .._version import __version__
from ..model.io import (
    CONFIG_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    ModelFileError,
    check_files,
    model_facts,
    read_manifest,
    verify_manifest,
    with_manifest,
    write_directory_atomically,
)

__all__ = [
    "OPTIMIZER_NAME",
    "STATE_NAME",
    "CheckpointError",
    "checkpoint_path",
    "checkpoint_problem",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "optimizer_from_flat",
    "optimizer_to_flat",
    "prune_checkpoints",
    "remove_staging",
    "save_checkpoint",
]

OPTIMIZER_NAME = "optimizer.safetensors"
STATE_NAME = "trainer_state.json"
CHECKPOINT_FORMAT = "attnmoe-checkpoint"
_STEP_DIR = re.compile(r"^step-(\d{9})$")


class CheckpointError(ModelFileError):
    """A checkpoint is missing, corrupted, or belongs to a different run."""


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    """Where the checkpoint after ``step`` optimizer steps lives."""
    return Path(directory) / f"step-{step:09d}"


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``directory`` as ``(step, path)``, oldest first.

    Staging directories of an interrupted write (``.step-...tmp-*``) never match,
    so a kill in the middle of a write is invisible here.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / STATE_NAME).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def remove_staging(directory: str | os.PathLike) -> None:
    """Delete what interrupted writes left behind (hidden ``.step-*`` staging folders).

    Only call this when no other process is writing checkpoints into ``directory``.
    """
    root = Path(directory)
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(".step-") and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's frame (header, length), or None.

    Reads the header only: a truncated or overwritten file is found without
    loading its tensors.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path.name} is truncated"
            length = int.from_bytes(head, "little")
            if length > size - 8:
                return f"{path.name} is truncated (its header says {length:,} bytes)"
            header = json.loads(fh.read(length))
    except OSError as err:
        return f"{path.name} is unreadable: {err}"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{path.name} has a corrupted header"
    if not isinstance(header, dict):
        return f"{path.name} has a corrupted header"
    try:
        end = max(
            (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
            default=0,
        )
    except (TypeError, KeyError, IndexError, ValueError):
        return f"{path.name} has a corrupted header"
    if size != 8 + length + end:
        return f"{path.name} holds {size:,} bytes, its header says {8 + length + end:,}"
    return None


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from (one line), or None.

    Checks that every file is there, the JSON files parse as a checkpoint of
    this format, the safetensors files are whole (their headers match their
    sizes), and every file matches its size and SHA-256 in ``manifest.json``; the
    tensors' values are checked when :func:`load_checkpoint` reads them.
    """
    root = Path(path)
    try:
        state = json.loads((root / STATE_NAME).read_text())
        json.loads((root / CONFIG_NAME).read_text())
    except OSError as err:
        return f"unreadable: {err}"
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"a JSON file is corrupted: {err}"
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return f"{STATE_NAME} is not an attnmoe checkpoint's"
    for name in (WEIGHTS_NAME, OPTIMIZER_NAME):
        problem = _safetensors_problem(root / name)
        if problem:
            return problem
    if (root / MANIFEST_NAME).exists():  # a flipped byte keeps the frame whole: hash the files
        try:
            check_files(root, read_manifest(root))
        except ModelFileError as err:
            return str(err)
    return None


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest checkpoint in ``directory`` that can be resumed from, or None if none exists.

    A damaged newer checkpoint (:func:`checkpoint_problem`) is passed over with a
    one-line warning for the previous one.

    Raises
    ------
    CheckpointError
        If ``directory`` holds checkpoints but none of them is whole.
    """
    found = list_checkpoints(directory)
    problems = []
    for _, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            if problems:
                warnings.warn(
                    f"{'; '.join(problems)}: resuming from {path.name} instead",
                    UserWarning,
                    stacklevel=2,
                )
            return path
        problems.append(f"checkpoint {path} is damaged ({problem})")
    if problems:
        raise CheckpointError(f"no usable checkpoint in {directory}: {'; '.join(problems)}")
    return None


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def _json_ready(value: Any) -> Any:
    # optimizer hyper-parameters hold tuples (Adam's betas); JSON has lists
    if isinstance(value, tuple | list):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} {value!r} in a JSON checkpoint")


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's ``state_dict`` into safetensors tensors and JSON.

    Returns
    -------
    tensors
        ``{"state.<param index>.<name>": tensor}`` (CPU, contiguous).
    meta
        ``{"param_groups": [...], "scalars": {index: {name: value}}}``: the
        hyper-parameters and any non-tensor per-parameter state.
    """
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[name] = _json_ready(value)
    return tensors, {"param_groups": _json_ready(sd["param_groups"]), "scalars": scalars}


def optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Inverse of :func:`optimizer_to_flat`: load the state into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group:  # torch's own state_dict has a tuple here
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    # load_state_dict moves the state to each parameter's device and dtype
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    directory: str | os.PathLike,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write the checkpoint after ``step`` optimizer steps, atomically.

    Parameters
    ----------
    directory
        The run's checkpoint folder (created if missing).
    step
        Optimizer steps done; names the checkpoint.
    model
        A model with ``config`` and ``save_pretrained`` semantics (any attnmoe form).
    optimizer
        Its optimizer.
    trainer_state
        JSON-serialisable position of the trainer (data position, seed, history).
    keep
        How many checkpoints to keep; older ones are deleted once this one is
        complete (``<= 0`` keeps all).

    Returns
    -------
    Path
        The checkpoint directory.
    """
    model_meta = {
        "model_type": type(model).__name__,
        "format_version": FORMAT_VERSION,
        "attnmoe_version": __version__,
        "config": model.config.to_dict(),
    }
    # safetensors refuses shared or non-contiguous storage: store plain CPU copies
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    state = {
        "format": CHECKPOINT_FORMAT,
        "format_version": 1,
        "step": int(step),
        "optimizer": {"class": type(optimizer).__name__, **opt_meta},
        "trainer": _json_ready(trainer_state),
    }
    files = {
        CONFIG_NAME: json.dumps(model_meta, indent=2).encode(),
        WEIGHTS_NAME: save_safetensors(weights),
        OPTIMIZER_NAME: save_safetensors(opt_tensors),
        STATE_NAME: json.dumps(state, indent=1).encode(),
    }
    files = with_manifest(files, model_facts(model_meta))  # manifest.json: sizes and SHA-256
    path = write_directory_atomically(checkpoint_path(directory, step), files)
    prune_checkpoints(directory, keep)
    return path


def _check_same_model(root: Path, model: nn.Module) -> None:
    """A checkpoint resumes only the model that wrote it: same form, same config
    (a different top_k, window or dropout loads the same weights into another model)."""
    saved = json.loads((root / CONFIG_NAME).read_text())
    theirs, mine = saved.get("config", {}), model.config.to_dict()
    if saved.get("model_type") != type(model).__name__:
        raise CheckpointError(
            f"{root} holds a {saved.get('model_type')}, not a {type(model).__name__}"
        )
    differ = [
        f"{k}={theirs.get(k)!r} (this run: {mine.get(k)!r})"
        for k in sorted(set(theirs) | set(mine))
        if theirs.get(k) != mine.get(k)
    ]
    if differ:
        raise CheckpointError(
            f"{root} was written by a model with {', '.join(differ)}; resume with the "
            "same model or a new folder"
        )


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Read a checkpoint; load it into ``model`` and ``optimizer`` when given.

    Returns
    -------
    dict
        ``{"step": int, "trainer": dict}``: the trainer state saved with it.

    Raises
    ------
    CheckpointError
        If a file is missing or corrupted, or the weights or optimizer do not fit.
    """
    root = Path(path)
    try:
        state = json.loads((root / STATE_NAME).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{root / STATE_NAME} is unreadable: {err}") from err
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{root} is not an attnmoe training checkpoint")
    try:
        verify_manifest(root)
        if model is not None:
            _check_same_model(root, model)
            weights = load_safetensors((root / WEIGHTS_NAME).read_bytes())
            model.load_state_dict(weights, strict=True)
        if optimizer is not None:
            saved_class = state["optimizer"]["class"]
            if saved_class != type(optimizer).__name__:
                raise CheckpointError(
                    f"{root} holds {saved_class} state, not {type(optimizer).__name__}"
                )
            tensors = load_safetensors((root / OPTIMIZER_NAME).read_bytes())
            optimizer_from_flat(optimizer, tensors, state["optimizer"])
    except (OSError, SafetensorError, RuntimeError, ValueError, KeyError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"cannot load checkpoint {root}: {err}") from err
    return {"step": int(state["step"]), "trainer": state["trainer"]}
