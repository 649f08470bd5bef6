"""Which windows each rank reads at each step, and the BERT masking drawn for them."""

from __future__ import annotations

import torch
from torch import Tensor

from .seeds import DATA, MASK, derive_seed

# -- which windows each rank reads ---------------------------------------------


class BatchOrder:
    """The epoch's order of global batches; a permutation that depends on (seed, epoch) only.

    Memory is 8 bytes per global batch of one epoch (e.g. 6 KiB for 100M tokens
    in batches of 1024 windows of 128 tokens), never the corpus.
    """

    def __init__(self, n_batches: int, seed: int, shuffle: bool) -> None:
        self.n_batches, self.seed, self.shuffle = n_batches, seed, shuffle
        self._epoch, self._perm = -1, None

    def batch(self, step: int) -> int:
        epoch, position = divmod(step, self.n_batches)
        if not self.shuffle:
            return position
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, DATA, epoch))
            self._perm, self._epoch = torch.randperm(self.n_batches, generator=gen), epoch
        return int(self._perm[position])


def global_batch_windows(
    step: int, n_windows: int, global_batch: int, seed: int = 0, shuffle: bool = True
) -> tuple[int, int]:
    """Window range ``(start, stop)`` of the global batch of optimizer step ``step``."""
    order = BatchOrder(n_windows // global_batch, seed, shuffle)
    first = order.batch(step) * global_batch
    return first, first + global_batch


def shard_range(batch_start: int, global_batch: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous slice of a global batch that ``rank`` of ``world_size`` reads."""
    per_rank = global_batch // world_size
    start = batch_start + rank * per_rank
    return start, start + per_rank


# -- the objective DDP wraps -----------------------------------------------------


def bert_masking(x: Tensor, draws: tuple[Tensor, ...], mask_id: int) -> tuple[Tensor, Tensor]:
    """BERT's 15 % / 80-10-10 masking from pre-drawn numbers (same rule as ``random_mask_loss``).

    Returns the model input and the bool ``(B, L)`` of locations to predict.
    """
    _u, action, random_words, chosen = draws
    inputs = torch.where(chosen & (action < 0.8), mask_id, x)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_words, inputs)
    return inputs, chosen


def draw_masking(
    seed: int, step: int, shape: tuple[int, int], mask_prob: float, vocab_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The random numbers of BERT masking for a whole global batch (identical on every rank)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, MASK, step))
    u = torch.rand(shape, generator=gen)
    chosen = u < mask_prob
    # every window predicts something: its highest-u location (as random_mask_loss)
    chosen[torch.arange(shape[0]), u.argmax(dim=1)] = True
    action = torch.rand(shape, generator=gen)
    random_words = torch.randint(vocab_size, shape, generator=gen)
    return u, action, random_words, chosen
