"""One stepper per training engine: each trains one epoch given its order of items.

An *item* is a sentence (all-locations and random masking) or a masked copy,
numbered ``sentence * L + location`` (``masking="copies"``). The loop in
:mod:`attnmoe.training.mlm` draws each epoch's order and hands it to the stepper;
the stepper returns the epoch's summed loss, the items it counted and the masked
predictions made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..model.base import MaskedWordModel
from .adam import KerasEpsilon
from .fused import FusedAdam, FusedMLM
from .losses import masked_copies_loss, mlm_loss, random_mask_loss

EpochResult = tuple[float, int, int]  # summed loss, items counted, masked predictions


@dataclass
class TrainingSet:
    """The training rows on the model's device and what an epoch's order draws from."""

    x: Tensor  # (N, L) token ids, or floating codes
    keys: Tensor | None  # (N, L) bool, False at padding
    weights: Tensor | None  # (L,) loss weight per location, or (N, L) per sentence and location
    copies: bool  # items are masked copies (sentence * L + location), else sentences
    items: Tensor | None  # copies: the items drawn from, when not all of them
    n_items: int

    @property
    def length(self) -> int:
        return self.x.shape[1]

    def sentence_weights(self, sentences: Tensor) -> Tensor | None:
        """The loss weights of these sentences' locations: ``(L,)`` or ``(B, L)``."""
        if self.weights is None or self.weights.dim() == 1:
            return self.weights
        return self.weights[sentences]


def non_finite(loss: float, epoch: int) -> FloatingPointError:
    return FloatingPointError(
        f"MLM loss became {loss} at epoch {epoch + 1}; the weights are kept "
        "from the last finite step. Try a lower learning rate."
    )


def adam(
    model: MaskedWordModel, lr: float, weight_decay: float, eps: float, keras: bool, fused: bool
) -> torch.optim.Optimizer | KerasEpsilon:
    """``torch.optim.Adam`` (its fused kernel if ``fused``), stepping as Keras's if ``keras``."""
    kwargs = {"fused": True} if fused else {}
    optimizer = torch.optim.Adam(
        model.parameters(), lr=lr, weight_decay=weight_decay, eps=eps, **kwargs
    )
    return KerasEpsilon(optimizer) if keras else optimizer


class BatchStepper:
    """Batches of ``per_step`` items in the epoch's order, one optimizer step each.

    Subclasses give :meth:`loss`: the batch's loss (gradients ready for ``backward``
    unless ``backward`` is False) and its masked predictions.
    """

    backward = True

    def __init__(self, model: MaskedWordModel, data: TrainingSet, optimizer, per_step: int):
        self.model, self.data, self.optimizer, self.per_step = model, data, optimizer, per_step

    def loss(self, idx: Tensor, copies: np.ndarray | None) -> tuple[Tensor, int]:
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        """Adam's learning rate from the next step on."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def epoch(self, order: Tensor, copies: np.ndarray | None, epoch: int) -> EpochResult:
        total, count, predictions = 0.0, 0, 0
        for first in range(0, len(order), self.per_step):
            idx = order[first : first + self.per_step]
            loss, made = self.loss(idx, copies)
            predictions += made
            if not torch.isfinite(loss):
                raise non_finite(loss.item(), epoch)
            if self.backward:
                loss.backward()
            self.optimizer.step()
            total += loss.item() * len(idx)
            count += len(idx)
        return total, count, predictions

    def rows(self, idx: Tensor) -> tuple[Tensor, Tensor | None]:
        keys = None if self.data.keys is None else self.data.keys[idx]
        return self.data.x[idx], keys


class AllLocations(BatchStepper):
    """Every location of each sentence masked alone (one pass for one-layer models)."""

    def loss(self, idx: Tensor, copies: np.ndarray | None) -> tuple[Tensor, int]:
        self.optimizer.zero_grad(set_to_none=True)
        x, keys = self.rows(idx)
        made = int(x.numel() if keys is None else keys.sum())
        return mlm_loss(self.model, x, keys, self.data.sentence_weights(idx)), made


class MaskedCopies(BatchStepper):
    """Masked copies shuffled across sentences and locations (the paper's Keras training)."""

    def loss(self, idx: Tensor, copies: np.ndarray | None) -> tuple[Tensor, int]:
        self.optimizer.zero_grad(set_to_none=True)
        length = self.data.length
        if copies is not None:  # this epoch's copies, part of their context hidden
            x = torch.from_numpy(copies[idx.cpu().numpy()]).to(self.data.x.device)
        else:
            x = self.data.x[idx // length]
        weights = self.data.sentence_weights(idx // length)
        return masked_copies_loss(self.model, x, idx % length, weights), len(idx)


class RandomMasking(BatchStepper):
    """BERT's random masking, drawn from ``generator``."""

    def __init__(self, model, data, optimizer, per_step, generator, mask_prob):
        super().__init__(model, data, optimizer, per_step)
        self.generator, self.mask_prob = generator, mask_prob

    def loss(self, idx: Tensor, copies: np.ndarray | None) -> tuple[Tensor, int]:
        self.optimizer.zero_grad(set_to_none=True)
        x, keys = self.rows(idx)
        return random_mask_loss(self.model, x, self.generator, keys, self.mask_prob), 0


class FusedBatches(BatchStepper):
    """The fused kernel's loss and gradients per batch (several threads), torch's fused Adam."""

    backward = False  # the kernel overwrites .grad in place (its buffers are wired to it)

    def __init__(self, model, data, optimizer, per_step, fused: FusedMLM):
        super().__init__(model, data, optimizer, per_step)
        self.fused = fused

    def loss(self, idx: Tensor, copies: np.ndarray | None) -> tuple[Tensor, int]:
        x = self.data.x[idx]
        return torch.tensor(self.fused.step(x, self.data.sentence_weights(idx))), int(x.numel())


class FusedEpochs:
    """Whole epochs in compiled code, Adam included (one thread)."""

    def __init__(self, data: TrainingSet, per_step: int, fused: FusedMLM, adam: FusedAdam):
        self.data, self.per_step, self.fused, self.adam = data, per_step, fused, adam
        self.tokens = data.x.numpy()

    def set_lr(self, lr: float) -> None:
        """Adam's learning rate from the next step on."""
        self.adam.lr = lr

    def epoch(self, order: Tensor, copies: np.ndarray | None, epoch: int) -> EpochResult:
        # the order may stop short of every item (the last epoch of a step budget)
        n_items, per_step = len(order), self.per_step
        sizes = np.minimum(per_step, n_items - np.arange(0, n_items, per_step))
        try:
            losses = self.fused.train_epoch(
                copies if copies is not None else self.tokens,
                order.numpy(),
                per_step,
                self.adam,
                self.data.copies,
                expanded=copies is not None,
            )
        except FloatingPointError as error:
            raise FloatingPointError(
                f"MLM loss became non-finite at epoch {epoch + 1} ({error}); the weights "
                "are kept from the last finite step. Try a lower learning rate."
            ) from None
        made = n_items if self.data.copies else n_items * self.data.length
        return float(losses @ sizes), int(sizes.sum()), made
