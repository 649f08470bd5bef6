"""The tabular entry of the data-parallel trainer: a table's rows as a token source.

:func:`train_rows_distributed` trains one model on a table's token rows (the
estimators' ``nproc``, ``attnmoe fit --nproc``, torchrun) through
:func:`~attnmoe.training.distributed.train_mlm_distributed`: the rows (or their
masked copies) in one seeded order, batches of it visited in a seeded order per
epoch, the budget in optimizer steps.
"""

from __future__ import annotations

import math
import os
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ...model.base import MaskedWordModel
from .launch import _launched_by_torchrun
from .rank import DistributedHistory
from .trainer import train_mlm_distributed


class RowSource:
    """A table's token rows as windows, in one order drawn from ``seed``.

    ``masking="all"``: a window is a row (``L`` tokens), rows whose every location
    is the mask token left out. ``"copies"``: a window is one masked copy, the
    row's ``L`` tokens then the location masked (``L + 1`` tokens), one per
    (row, location) whose token is not the mask token (a missing cell or an
    unlabelled row's target has nothing to teach). The batches of the trainer
    are consecutive windows; the order mixes rows, so each batch is a sample of
    the table. Holds the rows and the order (16 bytes per item).

    Parameters
    ----------
    tokens
        ``(N, L)`` token ids.
    mask_id
        The mask token's id.
    masking
        ``"copies"`` or ``"all"``.
    seed
        Seeds the order.
    """

    def __init__(
        self, tokens: np.ndarray, mask_id: int, masking: Literal["copies", "all"], seed: int
    ) -> None:
        self.tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        self.copies = masking == "copies"
        known = self.tokens != mask_id
        items = np.flatnonzero(known) if self.copies else np.flatnonzero(known.any(1))
        self.order = np.random.default_rng(seed).permutation(items)
        self.length = self.tokens.shape[1]
        self.window = self.length + 1 if self.copies else self.length

    def __len__(self) -> int:
        return len(self.order)

    def windows(self, start: int, stop: int) -> Tensor:
        """Windows ``start .. stop - 1`` as ``(stop - start, window)`` int64 token ids."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"windows {start}..{stop} outside 0..{len(self)}")
        items = self.order[start:stop]
        if not self.copies:
            return torch.from_numpy(self.tokens[items])
        rows, locations = np.divmod(items, self.length)
        return torch.from_numpy(np.column_stack([self.tokens[rows], locations]))


def train_rows_distributed(
    model: MaskedWordModel,
    tokens: np.ndarray,
    *,
    epochs: int,
    max_steps: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    masking: Literal["copies", "all"] = "copies",
    seed: int = 0,
    nproc: int = 1,
    device: str = "cpu",
    num_threads: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    verbose: int = 0,
) -> DistributedHistory:
    """Train ``model`` on a table's token rows with :func:`train_mlm_distributed`.

    Parameters
    ----------
    model
        A :class:`~attnmoe.model.BidirectionalAttention` (one layer for copies).
    tokens
        ``(N, L)`` token ids: the encoded columns and the target.
    epochs, max_steps
        The budget: ``epochs`` passes over the windows (each pass
        ``len(source) // batch`` steps; the remainder is left to later passes'
        orders), capped at ``max_steps`` optimizer steps (None: no cap).
    batch_size
        Windows per optimizer step over all processes (masked copies, or rows
        under ``"all"``); rounded down to a multiple of the processes.
    lr, weight_decay
        Adam's.
    masking
        ``"copies"`` (the estimators' default: masked copies shuffled across rows
        and columns) or ``"all"`` (rows with every location masked in turn).
    seed
        Seeds the order of the windows, of the batches and dropout. The same seed
        gives the same weights for any ``nproc`` up to float summation order (with
        ``dropout > 0``, in distribution only: dropout draws follow the split).
    nproc, device, num_threads, checkpoint_dir, checkpoint_every, resume, verbose
        As :func:`train_mlm_distributed`; under torchrun ``nproc`` is ignored.

    Returns
    -------
    DistributedHistory
    """
    if masking == "all" and (np.asarray(tokens) == model.config.mask_id).any():
        # the trainer's loss counts every location of a row under "all"
        raise ValueError(
            "the data-parallel trainer takes rows with missing cells (or unlabelled rows) "
            "as masked copies only: masking='copies' with one layer"
        )
    source = RowSource(tokens, model.config.mask_id, masking, seed)
    world = int(os.environ["WORLD_SIZE"]) if _launched_by_torchrun() else int(nproc)
    batch = max(world, batch_size - batch_size % world)
    if len(source) < batch:
        raise ValueError(
            f"{len(source)} {'masked copies' if masking == 'copies' else 'rows'} to train on, "
            f"fewer than one batch of {batch}"
        )
    steps = epochs * (len(source) // batch)
    if max_steps is not None:
        steps = min(steps, int(max_steps))
    return train_mlm_distributed(
        model, source, global_batch=batch, steps=max(1, steps), lr=lr,
        weight_decay=weight_decay, masking=masking, seed=seed, nproc=nproc, device=device,
        num_threads=num_threads, checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every, resume=resume, verbose=verbose,
        log_every=max(1, math.ceil(steps / 20)),
    )  # fmt: skip


__all__ = ["RowSource", "train_rows_distributed"]
