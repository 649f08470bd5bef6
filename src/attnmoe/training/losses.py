"""The masked-word losses, one per way of masking; each a plain function of model and batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.base import MaskedWordModel
from ..model.functional import log_softmax_last, split_codes

# Up to this many words per row the written-out log-softmax beats torch's kernel on CPU.
_SHORT_ROWS = 64


def code_losses(
    cross_entropy: Callable[[Tensor], Tensor], codes: Tensor, unknown: Tensor
) -> Tensor:
    """Each prediction's loss against its true code.

    ``cross_entropy(targets)`` gives the cross-entropy against word ids ``targets``
    (same shape as ``codes``). A whole code is its word; a fractional code ``c``
    (``lo = floor(c)``, ``t = c - lo``) has the soft target
    ``(1 - t) * CE(lo) + t * CE(lo + 1)``, which is ``CE(lo)`` where ``t == 0``.
    ``unknown`` (a location whose true code is the mask id) gets target 0: its
    weight must be 0.
    """
    lo, t = split_codes(codes)
    targets = lo.masked_fill(unknown, 0)
    losses = cross_entropy(targets)
    if t is None:
        return losses
    t = t.to(losses.dtype)
    # lo + 1 only where t > 0: a whole code may be the last word
    return (1 - t) * losses + t * cross_entropy(targets + (t > 0))


def mlm_loss(
    model: MaskedWordModel,
    x: Tensor,
    key_mask: Tensor | None = None,
    position_weights: Tensor | None = None,
    method: Literal["auto", "one_pass", "copies"] = "auto",
) -> Tensor:
    """Mean cross-entropy of every location masked alone.

    Parameters
    ----------
    model
        Any masked-word model.
    x
        ``(B, L)`` token ids, or floating codes (a fractional true code is a soft
        target: :func:`code_losses`).
    key_mask
        ``(B, L)`` bool, False at padding (padding is neither predicted nor seen).
        Locations holding the mask token (missing values) are seen as the mask
        but not predicted.
    position_weights
        ``(L,)`` weight of each location in the loss (e.g. to stress a target
        column), or ``(B, L)`` weight of each location of each sentence (e.g.
        a per-sentence weight times the location's); uniform when None.
    method
        Passed to :meth:`MaskedWordModel.masked_logits`.
    """
    logits = model.masked_logits(x, None, key_mask, method)  # (B, L, V)
    # a location whose true token is the mask (a missing value) has nothing to predict
    unknown = x == model.config.mask_id
    if logits.shape[-1] > _SHORT_ROWS:

        def cross_entropy(targets: Tensor) -> Tensor:  # (B, L)
            # wide vocabularies: torch's fused cross-entropy reads the logits once
            flat = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
            return flat.view_as(targets)
    else:
        log_probs = log_softmax_last(logits)  # (B, L, V)

        def cross_entropy(targets: Tensor) -> Tensor:  # (B, L)
            return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    losses = code_losses(cross_entropy, x, unknown)  # (B, L)
    weights = (
        torch.ones_like(losses) if position_weights is None else position_weights.expand_as(losses)
    )
    if key_mask is not None:
        weights = weights * key_mask
    weights = weights.masked_fill(unknown, 0.0)
    # where, not a product: a location weighted 0 must not bring a NaN or inf along
    weighted = torch.where(weights > 0, losses * weights, torch.zeros_like(losses))
    return weighted.sum() / weights.sum().clamp_min(1e-12)


def masked_copies_loss(
    model: MaskedWordModel,
    x: Tensor,
    locations: Tensor,
    position_weights: Tensor | None = None,
) -> Tensor:
    """Mean cross-entropy of masked copies: sentence ``b`` of ``x`` with its
    location ``locations[b]`` masked (one-layer models: from one pass).

    Weights as in :func:`mlm_loss`: ``position_weights[location]`` (``(L,)``) or
    ``position_weights[b, location]`` (``(B, L)``, a weight per copy's sentence and
    location), and 0 where the true token is the mask (a missing value). Fractional true
    codes are soft targets (:func:`code_losses`)."""
    rows = torch.arange(len(x), device=x.device)
    logits = model.masked_logits(x)[rows, locations]  # (B, V): one pass, then select
    targets = x[rows, locations]
    unknown = targets == model.config.mask_id
    losses = code_losses(
        lambda ids: F.cross_entropy(logits, ids, reduction="none"), targets, unknown
    )  # (B,)
    if position_weights is None:
        weights = torch.ones_like(losses)
    elif position_weights.dim() == 1:
        weights = position_weights.to(losses.dtype)[locations]
    else:
        weights = position_weights.to(losses.dtype)[rows, locations]
    weights = weights.masked_fill(unknown, 0.0)
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def random_mask_loss(
    model: MaskedWordModel,
    x: Tensor,
    generator: torch.Generator,
    key_mask: Tensor | None = None,
    mask_prob: float = 0.15,
) -> Tensor:
    """BERT's masking: choose ``mask_prob`` of locations (at least one per sentence);
    of those 80 % become the mask, 10 % a random word, 10 % stay; predict them all."""
    cfg = model.config
    present = torch.ones_like(x, dtype=torch.bool) if key_mask is None else key_mask
    present = present & (x != cfg.mask_id)  # a mask token (a missing value) is no target
    u = torch.rand(x.shape, generator=generator, device=x.device)
    chosen = (u < mask_prob) & present
    # make sure every sentence predicts something: its highest-u present location
    forced = torch.argmax(torch.where(present, u, -1.0), dim=1)
    rows = torch.arange(x.shape[0], device=x.device)[present.any(1)]
    chosen[rows, forced[rows]] = True
    action = torch.rand(x.shape, generator=generator, device=x.device)
    random_words = torch.randint(cfg.vocab_size, x.shape, generator=generator, device=x.device)
    inputs = torch.where(chosen & (action < 0.8), cfg.mask_id, x)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_words, inputs)
    logits = model.logits(inputs, key_mask)  # (B, L, V)
    if not x.dtype.is_floating_point:
        return F.cross_entropy(logits[chosen], x[chosen])
    chosen_logits, targets = logits[chosen], x[chosen]
    losses = code_losses(
        lambda ids: F.cross_entropy(chosen_logits, ids, reduction="none"),
        targets,
        torch.zeros_like(targets, dtype=torch.bool),  # chosen locations hold no mask token
    )
    return losses.mean()


def hide_context(
    tokens: np.ndarray, rate: float, mask_id: int, rng: np.random.Generator
) -> np.ndarray:
    """Every masked copy of ``tokens`` with part of its context hidden.

    ``(N, L)`` sentences -> ``(N * L, L)`` inputs: row ``s * L + i`` is the copy of
    sentence ``s`` that predicts location ``i``, with each *other* location
    replaced by the mask token with probability ``rate`` (independently). Location
    ``i`` keeps its word: it is the prediction's target (the model masks it
    itself). Locations already holding the mask token stay masked. Memory: the
    ``N * L * L`` copies (in ``tokens``' dtype: word ids or floating codes) plus as
    many float64 draws while they are made.
    """
    n, length = tokens.shape
    copies = np.repeat(tokens, length, axis=0)  # (N * L, L)
    hide = rng.random(copies.shape) < rate
    hide[np.arange(n * length), np.tile(np.arange(length), n)] = False  # the targets
    copies[hide] = mask_id
    return copies
