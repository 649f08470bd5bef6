"""Masked-language-model training for every model form: :func:`train_mlm`.

One-layer models see every location of every sentence masked once per epoch,
computed in one L x L pass (exact: see :func:`~attnmoe.model.functional.mix_experts_one_pass`).
Deeper models use BERT's random masking (15 %, 80/10/10) or, on request, one
masked copy per location. The options are checked (:mod:`.options`), the
training rows prepared, and one plain epoch loop drives the engine's stepper
(:mod:`.steppers`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..model.base import MaskedWordModel
from ..model.functional import CODE_DTYPES, check_codes
from .adam import KERAS_ADAM_EPS
from .fused import DropoutStream, FusedAdam, FusedMLM, fused_supported
from .losses import hide_context, mlm_loss
from .options import (
    Masking,
    check_adam,
    check_average_last,
    check_context_mask_rate,
    check_engine,
    check_lr,
    check_lr_schedule,
    check_patience,
    lr_factor,
    resolve_masking,
)
from .steppers import (
    AllLocations,
    FusedBatches,
    FusedEpochs,
    MaskedCopies,
    RandomMasking,
    TrainingSet,
)
from .steppers import (
    adam as make_adam,
)
from .threads import torch_threads

Engine = Literal["auto", "torch", "fused"]
AdamFlavour = Literal["torch", "keras"]


@dataclass
class TrainingHistory:
    """What happened during :func:`train_mlm`."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    masked_predictions: int = 0
    averaged_epochs: int = 0  # end-of-epoch weights averaged into the result
    steps: int = 0  # optimizer steps taken


def _as_tokens(data: Tensor | np.ndarray) -> Tensor:
    tokens = torch.as_tensor(np.asarray(data) if not isinstance(data, Tensor) else data)
    if tokens.ndim != 2:
        raise ValueError(
            f"training data must be (n_sentences, length) token ids, got {tuple(tokens.shape)}"
        )
    if tokens.dtype.is_floating_point:  # continuous codes (model.functional): kept as they are
        if tokens.dtype not in CODE_DTYPES:
            raise TypeError(f"training codes must be float32 or float64, got {tokens.dtype}")
        return tokens
    if tokens.dtype == torch.bool:
        raise TypeError(f"training data must be integer token ids, got {tokens.dtype}")
    return tokens.long()


def _check_ids(tokens: Tensor, mask_id: int, what: str) -> None:
    # the compiled engine indexes its tables by id without bounds checks: check here
    check_codes(tokens, mask_id, f"{what} token ids")


def train_mlm(
    model: MaskedWordModel,
    data: Tensor | np.ndarray,
    *,
    key_mask: Tensor | None = None,
    epochs: int = 10,
    max_steps: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    lr_schedule: str = "constant",
    weight_decay: float = 0.0,
    masking: Masking = "auto",
    mask_prob: float = 0.15,
    context_mask_rate: float = 0.0,
    position_weights: Tensor | None = None,
    validation: float | Tensor | np.ndarray = 0.0,
    validation_key_mask: Tensor | None = None,
    patience: int | None = None,
    average_last: float = 0.0,
    seed: int | None = 0,
    verbose: int = 1,
    on_epoch_end: Callable[[int, TrainingHistory], None] | None = None,
    num_threads: int | None = None,
    engine: Engine = "auto",
    adam: AdamFlavour = "torch",
) -> TrainingHistory:
    """Fit any model form by maximum likelihood of masked words (Adam).

    Parameters
    ----------
    model
        :class:`BidirectionalAttention`, :class:`ContinuousWordExperts` or :class:`CBOW`.
    data
        ``(N, L)`` token ids, or floating codes: a fractional code ``c`` is the input
        ``(1 - t) E[floor(c)] + t E[floor(c) + 1]`` (``t = c - floor(c)``) and, where
        predicted, the soft target ``(1 - t) CE(floor(c)) + t CE(floor(c) + 1)``
        (:mod:`attnmoe.model.functional`). Both engines take either.
    key_mask
        ``(N, L)`` bool, False at padding.
    epochs, batch_size, lr, weight_decay
        Optimisation budget; ``batch_size`` counts sentences (masked copies
        under ``masking="copies"``).
    lr_schedule
        ``"constant"`` (the paper's training) keeps ``lr`` throughout;
        ``"linear"`` and ``"cosine"`` lower it at the start of each epoch, from
        ``lr`` at the first toward 0 after the last (:func:`.options.lr_factor`),
        over the epochs begun under ``max_steps``. Small steps at the end leave
        the weights less to the last batches' draw.
    max_steps
        A cap on the optimizer steps over the whole training (None: no cap). The
        epochs run as usual until the cap; the last one may stop part-way through
        its order (its first ``batch_size`` items per remaining step). When the
        cap cuts training short, ``epochs`` counts only the epochs begun (for
        ``average_last``) and ``history.epochs_run`` says how many ran. A cap at
        or above ``epochs`` times the steps of an epoch changes nothing.
    masking
        ``"all"``: every location masked once per sentence per epoch (one pass
        for one-layer models, masked copies otherwise); a batch is
        ``batch_size`` sentences with all their locations. ``"copies"`` (one
        layer): the same masked copies, but shuffled across sentences and
        locations; a batch is ``batch_size`` copies (the paper's Keras
        training). ``"random"``: BERT's 15 % / 80-10-10 masking. ``"auto"``:
        ``"all"`` for one layer, else random.
    mask_prob
        Share of locations predicted under random masking.
    context_mask_rate
        Under ``masking="copies"``: each masked copy also hides each of its other
        locations behind the mask token with this probability, drawn afresh every
        epoch (seeded; :func:`hide_context`). The model then learns to predict from
        partial sentences, as it must when values are missing at prediction time,
        and cannot lean on one of several interchangeable locations. 0 (the
        paper's training) hides nothing else. Holds the ``N * L`` copies
        (``N * L * L`` tokens) of an epoch in memory. The validation loss still
        reads whole sentences.
    position_weights
        Loss weights under ``"all"`` or ``"copies"`` masking: ``(L,)`` per
        location, or ``(N, L)`` per sentence and location (e.g. a sample weight
        per sentence times each location's weight). The loss is the weighted
        mean over a batch's predictions, so an integer weight on a sentence
        counts it as that many copies; predictions weighted 0 are left out.
        ``(N, L)`` weights follow their sentences through a validation split;
        the validation loss is unweighted.
    validation
        A fraction of ``data`` held out (seeded), or separate ``(M, L)`` token ids.
        The validation loss always uses all-locations masking, so it is comparable
        across epochs.
    validation_key_mask
        ``(M, L)`` bool, False at padding, for separate validation token ids only
        (a held-out fraction takes its rows of ``key_mask``).
    patience
        Stop after this many epochs without a lower validation loss and restore
        the best weights. Needs a validation set.
    average_last
        Share of the epochs, the last ones, whose end-of-epoch weights are averaged
        into the returned model (checkpoint averaging, as in the Transformer paper;
        stochastic weight averaging, Izmailov et al. 2018, with the training's own
        learning rate). 0.5 of 200 epochs averages the weights after epochs 101 to
        200 (the count is rounded half up, at least one). A mean of nearby
        solutions lies in a flatter region of the loss, which is reported to
        generalise better under distribution shift (SWAD, Cha et al. 2021). 0
        (the default) returns the last epoch's weights. Cannot be combined with
        early stopping; the validation losses are those of each epoch's own
        weights. If the loss becomes non-finite, nothing is averaged (see Raises).
    seed
        Seeds shuffling, masking and dropout: the same seed gives the same weights.
        None leaves torch's global generator (dropout) unseeded; shuffling and
        masking then draw as with seed 0.
    verbose
        0 silent; 1 a progress bar over epochs, named after the engine (``MLM fused``).
    on_epoch_end
        Called as ``on_epoch_end(epoch, history)`` after each epoch.
    num_threads
        Torch intra-op threads while training (restored afterwards); None keeps
        the current setting. Small models train fastest on one thread.
    engine
        ``"torch"``: autograd through the model's modules. ``"fused"``: the
        compiled kernel of :mod:`attnmoe.training.fused` (same loss and gradients;
        one-layer models with all-locations masking, no padding; dropout masks
        come from the kernel's own generator; on one thread whole epochs, Adam
        included, run in compiled code, on several the batch is split across
        threads and torch's fused Adam steps).
        ``"auto"``: fused when supported and the model is small, else torch.
    adam
        ``"torch"``: ``torch.optim.Adam`` (epsilon 1e-8 added to the bias-corrected
        root second moment). ``"keras"``: Adam as the paper's Keras code ran it:
        epsilon 1e-7 added to the *uncorrected* root second moment, on a loss
        averaged over all ``L`` locations of each sentence (only the masked one
        counted); on this function's mean masked loss that is epsilon ``1e-7 * L``.
        The two differ only where a gradient's scale is near epsilon.

    Returns
    -------
    TrainingHistory

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or infinite; the weights are those of the last
        finite step (the bad step is not applied).
    ValueError
        For invalid options, or if nothing is left to predict: every location is
        the mask token (a missing value), padding or weighted 0. Such locations
        are left out of the epochs, so no batch consists of them only.
    """
    tokens = _as_tokens(data)
    masking, engine = _check_options(
        model, tokens, key_mask, epochs, batch_size, lr, masking, context_mask_rate, engine, adam
    )
    if seed is not None:
        torch.manual_seed(seed)  # dropout draws from the global generator
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    train_x, train_keys, val_x, val_keys, train_weights = _split(
        model, tokens, key_mask, validation, validation_key_mask, generator, position_weights
    )
    if len(train_x) == 0:
        raise ValueError("no training sentences left after the validation split")
    check_patience(patience, val_x is not None)
    check_lr_schedule(lr_schedule)
    average_last = check_average_last(average_last, patience is not None)
    # the last n_average epochs' weights are summed (float64) and their mean returned
    train = _training_set(model, train_x, train_keys, train_weights, masking)
    per_step = min(batch_size, train.n_items)
    epochs = _budget_epochs(epochs, max_steps, math.ceil(train.n_items / per_step))
    n_average = 0 if average_last == 0 else max(1, math.floor(average_last * epochs + 0.5))
    stepper, num_threads = _stepper(
        model, train, engine, masking, batch_size, lr, weight_decay, adam, mask_prob,
        generator, seed, num_threads,
    )  # fmt: skip
    draw_copies = _context_copies(train, context_mask_rate, model.config.mask_id, seed)
    history = TrainingHistory()
    best_loss, best_state, stale = math.inf, None, 0
    weight_sums: list[Tensor] = []
    start = time.perf_counter()
    with torch_threads(num_threads):
        # the bar names the engine: verbose shows which one trains
        bar = tqdm(
            range(epochs), desc=f"MLM {engine}", unit="epoch", disable=verbose <= 0, leave=False
        )
        for epoch in bar:
            model.train()
            if lr_schedule != "constant":
                stepper.set_lr(lr * lr_factor(lr_schedule, epoch, epochs))
            order = torch.randperm(train.n_items, generator=generator)
            order = (order if train.items is None else train.items.cpu()[order]).to(train.x.device)
            if max_steps is not None:  # the budget's last epoch stops part-way
                order = order[: (max_steps - history.steps) * per_step]
            total, count, made = stepper.epoch(order, draw_copies(), epoch)
            history.masked_predictions += made
            history.steps += math.ceil(len(order) / per_step)
            history.train_loss.append(total / count)
            history.epochs_run = epoch + 1
            postfix = {"loss": f"{history.train_loss[-1]:.4f}"}
            if val_x is not None:
                val_loss = evaluate_mlm(model, val_x, val_keys, batch_size=max(batch_size, 256))
                history.validation_loss.append(val_loss)
                postfix["val"] = f"{val_loss:.4f}"
                if val_loss < best_loss - 1e-7:
                    best_loss, stale, history.best_epoch = val_loss, 0, epoch + 1
                    if patience is not None:
                        best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
            bar.set_postfix(postfix, refresh=False)  # redrawn at the bar's own pace
            if epoch >= epochs - n_average:
                _add_weights(weight_sums, model)
                history.averaged_epochs += 1
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, history)
            if patience is not None and stale >= patience:
                history.stopped_early = True
                break
    bar.close()
    _finish(model, best_state, weight_sums, history.averaged_epochs)
    history.seconds = time.perf_counter() - start
    return history


def _budget_epochs(epochs: int, max_steps: int | None, steps_per_epoch: int) -> int:
    """The epochs begun under a cap of ``max_steps`` optimizer steps (all when None)."""
    if max_steps is None:
        return epochs
    if isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be None or a positive integer, got {max_steps!r}")
    return min(epochs, math.ceil(int(max_steps) / steps_per_epoch))


def _check_options(
    model: MaskedWordModel,
    tokens: Tensor,
    key_mask: Tensor | None,
    epochs: int,
    batch_size: int,
    lr: float,
    masking: str,
    context_mask_rate: float,
    engine: str,
    adam: str,
) -> tuple[str, str]:
    """Check the options that need no data split; return the masking and engine chosen."""
    cfg = model.config
    if tokens.shape[1] > cfg.max_len:
        raise ValueError(f"sentences of length {tokens.shape[1]} exceed max_len={cfg.max_len}")
    _check_ids(tokens, cfg.mask_id, "training")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")
    check_lr(lr)
    masking = resolve_masking(masking, model, ("all", "copies", "random"))
    copies = masking == "copies"
    if copies and (key_mask is not None or not model.one_pass_exact):
        raise ValueError("masking='copies' needs a one-layer model and no key_mask")
    check_context_mask_rate(context_mask_rate, copies)
    fusable = (
        masking in ("all", "copies")
        and key_mask is None
        and fused_supported(model, tokens.shape[1])
    )
    check_adam(adam)
    check_engine(engine)
    if engine == "auto":
        engine = "fused" if fusable else "torch"
    if engine == "fused" and not fusable:
        raise ValueError(
            "engine='fused' needs a small one-layer BidirectionalAttention on CPU (ReLU, "
            "biases, dense gates), all-locations or copies masking, no key_mask, and numba "
            "installed"
        )
    return masking, engine


def _split(
    model: MaskedWordModel,
    tokens: Tensor,
    key_mask: Tensor | None,
    validation: float | Tensor | np.ndarray,
    validation_key_mask: Tensor | None,
    generator: torch.Generator,
    weights: Tensor | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Training rows and keys, validation rows and keys (None when there are none), and
    the training rows' loss weights (per-sentence weights follow their sentences)."""
    if weights is not None and weights.dim() == 2 and len(weights) != len(tokens):
        raise ValueError(
            f"position_weights per sentence must have {len(tokens)} rows, got {len(weights)}"
        )
    if not isinstance(validation, (int, float, np.integer, np.floating)) or isinstance(
        validation, bool
    ):  # token ids; a number (0 or 0.2, numpy's too) is a fraction
        val_x = _as_tokens(validation)
        _check_ids(val_x, model.config.mask_id, "validation")
        return tokens, key_mask, val_x, validation_key_mask, weights
    validation = float(validation)
    if not 0.0 <= validation < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {validation}")
    if validation_key_mask is not None:  # the held-out rows' keys come from key_mask
        raise ValueError(
            "validation_key_mask goes with validation token ids; a validation "
            "fraction takes its padding mask from key_mask"
        )
    n_val = round(validation * len(tokens))
    order = torch.randperm(len(tokens), generator=generator)
    val_idx, train_idx = order[:n_val], order[n_val:]
    val_x = tokens[val_idx] if n_val else None
    val_keys = None if key_mask is None or not n_val else key_mask[val_idx]
    train_keys = None if key_mask is None else key_mask[train_idx]
    if weights is not None and weights.dim() == 2:
        weights = weights[train_idx]
    return tokens[train_idx], train_keys, val_x, val_keys, weights


def _training_set(
    model: MaskedWordModel,
    x: Tensor,
    keys: Tensor | None,
    position_weights: Tensor | None,
    masking: str,
) -> TrainingSet:
    """The training rows on the model's device, without items that have nothing to predict."""
    device = next(model.parameters()).device
    x = x.to(device)
    keys = None if keys is None else keys.to(device)
    weights = _position_weights(model, position_weights, tuple(x.shape), masking)
    # targets with nothing to predict (the mask token, e.g. a missing cell; padding;
    # loss weight 0) are left out of the epochs: a batch of only those has no loss
    predictable = x != model.config.mask_id  # (N, L)
    if keys is not None:
        predictable &= keys
    if weights is not None:
        predictable &= weights > 0
    copies = masking == "copies"
    items = None  # copies: the (sentence, location) pairs drawn from, when not all
    if copies and not bool(predictable.all()):
        items = predictable.reshape(-1).nonzero().squeeze(1)
    elif not copies and not bool(predictable.any(1).all()):
        rows = predictable.any(1)
        x, keys = x[rows], None if keys is None else keys[rows]
        if weights is not None and weights.dim() == 2:
            weights = weights[rows]
    # copies: order numbers (sentence, location) pairs as sentence * L + location
    n_items = len(items) if items is not None else x.numel() if copies else len(x)
    if n_items == 0:
        raise ValueError(
            "nothing to predict: every training location is the mask token (a missing "
            "value), padding or weighted 0"
        )
    return TrainingSet(x, keys, weights, copies, items, n_items)


def _position_weights(
    model: MaskedWordModel, position_weights: Tensor | None, shape: tuple[int, int], masking: str
) -> Tensor | None:
    if position_weights is None:
        return None
    weights = position_weights.to(next(model.parameters()).device, model.output.weight.dtype)
    if not bool(((weights >= 0) & torch.isfinite(weights)).all()):
        raise ValueError("position_weights must be finite and >= 0")
    n, length = shape
    if tuple(weights.shape) not in ((length,), (n, length)):
        raise ValueError(
            f"position_weights must have shape ({length},) or ({n}, {length}), "
            f"got {tuple(weights.shape)}"
        )
    if masking == "random":
        raise ValueError(
            "position_weights need masking 'all' or 'copies' (random masking ignores them)"
        )
    return weights


def _stepper(
    model: MaskedWordModel,
    train: TrainingSet,
    engine: str,
    masking: str,
    batch_size: int,
    lr: float,
    weight_decay: float,
    adam: str,
    mask_prob: float,
    generator: torch.Generator,
    seed: int | None,
    num_threads: int | None,
):
    """The engine's stepper, and the torch threads to train with."""
    per_step = min(batch_size, train.n_items)
    keras = adam == "keras"
    eps = KERAS_ADAM_EPS * train.length if keras else 1e-8
    if engine == "fused":
        fused = FusedMLM(
            model,
            train.length,
            -(-per_step // train.length) if train.copies else per_step,
            train.weights,
            DropoutStream(0 if seed is None else seed),
            # copies run as whole compiled epochs only, on one thread
            num_threads=1 if train.copies else (num_threads or torch.get_num_threads()),
        )
        # the kernel runs its own threads; torch's GEMMs there are tiny: one torch thread
        if fused.num_threads == 1:  # whole epochs in compiled code, Adam included
            adam_ = FusedAdam(fused, lr=lr, weight_decay=weight_decay, eps=eps, eps_hat=keras)
            return FusedEpochs(train, per_step, fused, adam_), 1
        optimizer = make_adam(model, lr, weight_decay, eps, keras, fused=True)
        return FusedBatches(model, train, optimizer, per_step, fused), 1
    optimizer = make_adam(model, lr, weight_decay, eps, keras, fused=False)
    if masking == "all":
        return AllLocations(model, train, optimizer, per_step), num_threads
    if masking == "copies":
        return MaskedCopies(model, train, optimizer, per_step), num_threads
    return RandomMasking(model, train, optimizer, per_step, generator, mask_prob), num_threads


def _context_copies(
    train: TrainingSet, rate: float, mask_id: int, seed: int | None
) -> Callable[[], np.ndarray | None]:
    """Each epoch's masked copies with part of their context hidden (None: none hidden)."""
    if rate == 0:
        return lambda: None
    rng = np.random.default_rng(0 if seed is None else seed)
    sentences = train.x.cpu().numpy()
    # (N * L, L): copy s * L + i predicts location i of sentence s
    return lambda: hide_context(sentences, rate, mask_id, rng)


@torch.no_grad()
def _finish(
    model: MaskedWordModel, best_state: dict | None, weight_sums: list[Tensor], n_averaged: int
) -> None:
    """Restore the best weights (early stopping) or the average of the last epochs' weights."""
    if best_state is not None:
        model.load_state_dict(best_state)
    if weight_sums:
        for total_w, p in zip(weight_sums, model.parameters(), strict=True):
            p.copy_(total_w / n_averaged)
    model.eval()


@torch.no_grad()
def _add_weights(sums: list[Tensor], model: MaskedWordModel) -> None:
    """Add the model's parameters, in float64, to ``sums`` (filled on the first call)."""
    if not sums:
        sums.extend(p.detach().to(torch.float64, copy=True) for p in model.parameters())
    else:
        for total, p in zip(sums, model.parameters(), strict=True):
            total.add_(p.detach())


@torch.no_grad()
def evaluate_mlm(
    model: MaskedWordModel,
    data: Tensor | np.ndarray,
    key_mask: Tensor | None = None,
    batch_size: int = 256,
) -> float:
    """Mean masked-word cross-entropy over every (non-padding) location."""
    tokens = _as_tokens(data)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    for first in range(0, len(tokens), batch_size):
        x = tokens[first : first + batch_size].to(device)
        keys = None if key_mask is None else key_mask[first : first + batch_size].to(device)
        known = x != model.config.mask_id
        n = float(known.sum() if keys is None else (known & keys).sum())
        total += mlm_loss(model, x, keys).item() * n
        count += n
    model.train(was_training)
    return total / max(count, 1.0)
