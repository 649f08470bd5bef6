"""Masked-language-model training for every model form.

One-layer models see every location of every sentence masked once per epoch,
computed in one L x L pass (exact: see :func:`~attnmoe.model.functional.mix_experts_one_pass`).
Deeper models use BERT's random masking (15 %, 80/10/10) or, on request, one
masked copy per location.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .base import MaskedWordModel
from .functional import log_softmax_last
from .fused import DropoutStream, FusedAdam, FusedMLM, fused_supported

Masking = Literal["auto", "all", "copies", "random"]
# Up to this many words per row the written-out log-softmax beats torch's kernel on CPU.
_SHORT_ROWS = 64
Engine = Literal["auto", "torch", "fused"]
AdamFlavour = Literal["torch", "keras"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads (unchanged when None)."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
        ``(B, L)`` token ids.
    key_mask
        ``(B, L)`` bool, False at padding (padding is neither predicted nor seen).
        Locations holding the mask token (missing values) are seen as the mask
        but not predicted.
    position_weights
        ``(L,)`` weight of each location in the loss (e.g. to stress a target
        column); uniform when None.
    method
        Passed to :meth:`MaskedWordModel.masked_logits`.
    """
    logits = model.masked_logits(x, None, key_mask, method)  # (B, L, V)
    # a location whose true token is the mask (a missing value) has nothing to predict
    unknown = x == model.config.mask_id
    targets = x.masked_fill(unknown, 0)
    if logits.shape[-1] > _SHORT_ROWS:
        # wide vocabularies: torch's fused cross-entropy reads the logits once
        losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(
            targets
        )  # (B, L)
    else:
        log_probs = log_softmax_last(logits)  # (B, L, V)
        losses = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, L)
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

    Weights as in :func:`mlm_loss`: ``position_weights[location]``, and 0 where
    the true token is the mask (a missing value)."""
    rows = torch.arange(len(x), device=x.device)
    logits = model.masked_logits(x)[rows, locations]  # (B, V): one pass, then select
    targets = x[rows, locations]
    unknown = targets == model.config.mask_id
    losses = F.cross_entropy(logits, targets.masked_fill(unknown, 0), reduction="none")  # (B,)
    weights = (
        torch.ones_like(losses)
        if position_weights is None
        else position_weights.to(losses.dtype)[locations]
    )
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
    return F.cross_entropy(logits[chosen], x[chosen])


def hide_context(
    tokens: np.ndarray, rate: float, mask_id: int, rng: np.random.Generator
) -> np.ndarray:
    """Every masked copy of ``tokens`` with part of its context hidden.

    ``(N, L)`` sentences -> ``(N * L, L)`` inputs: row ``s * L + i`` is the copy of
    sentence ``s`` that predicts location ``i``, with each *other* location
    replaced by the mask token with probability ``rate`` (independently). Location
    ``i`` keeps its word: it is the prediction's target (the model masks it
    itself). Locations already holding the mask token stay masked. Memory: the
    ``N * L * L`` copies (int64) plus as many float64 draws while they are made.
    """
    n, length = tokens.shape
    copies = np.repeat(tokens, length, axis=0)  # (N * L, L)
    hide = rng.random(copies.shape) < rate
    hide[np.arange(n * length), np.tile(np.arange(length), n)] = False  # the targets
    copies[hide] = mask_id
    return copies


def _as_tokens(data: Tensor | np.ndarray) -> Tensor:
    tokens = torch.as_tensor(np.asarray(data) if not isinstance(data, Tensor) else data)
    if tokens.ndim != 2:
        raise ValueError(
            f"training data must be (n_sentences, length) token ids, got {tuple(tokens.shape)}"
        )
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"training data must be integer token ids, got {tokens.dtype}")
    return tokens.long()


def _check_ids(tokens: Tensor, mask_id: int, what: str) -> None:
    # the compiled engine indexes its tables by id without bounds checks: check here
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > mask_id):
        raise ValueError(
            f"{what} token ids must lie in [0, {mask_id}] (mask id included), "
            f"got [{int(tokens.min())}, {int(tokens.max())}]"
        )


#: Keras's default Adam epsilon (torch's is 1e-8)
KERAS_ADAM_EPS = 1e-7


class _KerasEpsilon:
    """``torch.optim.Adam`` stepping as Keras's Adam: epsilon on the uncorrected sqrt(v).

    torch divides by ``sqrt(v_t / (1 - beta2^t)) + eps``, Keras (with the same
    bias-corrected step size) by ``(sqrt(v_t) + eps) / sqrt(1 - beta2^t)``: the same
    update when torch's epsilon at step ``t`` is ``eps / sqrt(1 - beta2^t)``.
    """

    def __init__(self, optimizer: torch.optim.Adam) -> None:
        self.optimizer = optimizer
        self.eps = [group["eps"] for group in optimizer.param_groups]
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.steps += 1
        for group, eps in zip(self.optimizer.param_groups, self.eps, strict=True):
            group["eps"] = eps / math.sqrt(1.0 - group["betas"][1] ** self.steps)
        self.optimizer.step()


def train_mlm(
    model: MaskedWordModel,
    data: Tensor | np.ndarray,
    *,
    key_mask: Tensor | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
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
        ``(N, L)`` token ids.
    key_mask
        ``(N, L)`` bool, False at padding.
    epochs, batch_size, lr, weight_decay
        Optimisation budget; ``batch_size`` counts sentences (masked copies
        under ``masking="copies"``).
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
        ``(L,)`` loss weight per location under ``"all"`` or ``"copies"`` masking.
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
        0 silent; 1 a progress bar over epochs.
    on_epoch_end
        Called as ``on_epoch_end(epoch, history)`` after each epoch.
    num_threads
        Torch intra-op threads while training (restored afterwards); None keeps
        the current setting. Small models train fastest on one thread.
    engine
        ``"torch"``: autograd through the model's modules. ``"fused"``: the
        compiled kernel of :mod:`attnmoe.model.fused` (same loss and gradients;
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
    cfg = model.config
    if tokens.shape[1] > cfg.max_len:
        raise ValueError(f"sentences of length {tokens.shape[1]} exceed max_len={cfg.max_len}")
    _check_ids(tokens, cfg.mask_id, "training")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")
    if not lr > 0 or not math.isfinite(lr):  # 0 would train nothing, silently
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if masking == "auto":
        masking = "all" if model.one_pass_exact else "random"
    if masking not in ("all", "copies", "random"):
        raise ValueError(f"masking must be 'auto', 'all', 'copies' or 'random', got {masking!r}")
    copies = masking == "copies"
    if copies and (key_mask is not None or not model.one_pass_exact):
        raise ValueError("masking='copies' needs a one-layer model and no key_mask")
    if not 0.0 <= context_mask_rate < 1.0:
        raise ValueError(f"context_mask_rate must be in [0, 1), got {context_mask_rate!r}")
    if context_mask_rate > 0 and not copies:
        raise ValueError("context_mask_rate > 0 needs masking='copies'")
    fusable = (
        masking in ("all", "copies")
        and key_mask is None
        and fused_supported(model, tokens.shape[1])
    )
    if adam not in ("torch", "keras"):
        raise ValueError(f"adam must be 'torch' or 'keras', got {adam!r}")
    if engine not in ("auto", "torch", "fused"):
        raise ValueError(f"engine must be 'auto', 'torch' or 'fused', got {engine!r}")
    if engine == "auto":
        engine = "fused" if fusable else "torch"
    if engine == "fused" and not fusable:
        raise ValueError(
            "engine='fused' needs a small one-layer BidirectionalAttention on CPU (ReLU, "
            "biases, dense gates), all-locations or copies masking, no key_mask, and numba "
            "installed"
        )
    if seed is not None:
        torch.manual_seed(seed)  # dropout draws from the global generator
    generator = torch.Generator().manual_seed(0 if seed is None else seed)

    device = next(model.parameters()).device
    train_x, train_keys = tokens, key_mask
    if isinstance(validation, (int, float, np.integer, np.floating)) and not isinstance(
        validation, bool
    ):  # a fraction (0 or 0.2, numpy's too); anything else is token ids
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
        train_x = tokens[train_idx]
        train_keys = None if key_mask is None else key_mask[train_idx]
    else:
        val_x, val_keys = _as_tokens(validation), validation_key_mask
        _check_ids(val_x, cfg.mask_id, "validation")
    if len(train_x) == 0:
        raise ValueError("no training sentences left after the validation split")
    if patience is not None and (isinstance(patience, bool) or not patience >= 1):
        raise ValueError(f"patience must be None or >= 1 epoch, got {patience!r}")
    if patience is not None and val_x is None:
        raise ValueError("early stopping (patience) needs a validation set")
    if isinstance(average_last, bool) or not 0.0 <= average_last <= 1.0:
        raise ValueError(f"average_last must be in [0, 1], got {average_last!r}")
    if average_last > 0 and patience is not None:
        raise ValueError("average_last cannot be combined with early stopping (patience)")
    # the last n_average epochs' weights are summed (float64) and their mean returned
    n_average = 0 if average_last == 0 else max(1, math.floor(average_last * epochs + 0.5))
    weight_sums: list[Tensor] = []

    train_x = train_x.to(device)
    train_keys = None if train_keys is None else train_keys.to(device)
    weights = (
        None if position_weights is None else position_weights.to(device, model.output.weight.dtype)
    )
    if weights is not None and not bool(((weights >= 0) & torch.isfinite(weights)).all()):
        raise ValueError("position_weights must be finite and >= 0")
    if weights is not None and tuple(weights.shape) != (tokens.shape[1],):
        raise ValueError(
            f"position_weights must have shape ({tokens.shape[1]},), got {tuple(weights.shape)}"
        )
    if weights is not None and masking == "random":
        raise ValueError(
            "position_weights need masking 'all' or 'copies' (random masking ignores them)"
        )

    fused = engine == "fused"
    fused_adam = None
    length = train_x.shape[1]
    adam_eps = KERAS_ADAM_EPS * length if adam == "keras" else 1e-8
    # targets with nothing to predict (the mask token, e.g. a missing cell; padding;
    # loss weight 0) are left out of the epochs: a batch of only those has no loss
    predictable = train_x != cfg.mask_id  # (N, L)
    if train_keys is not None:
        predictable &= train_keys
    if weights is not None:
        predictable &= weights > 0
    items = None  # copies: the (sentence, location) pairs drawn from, when not all
    if copies and not bool(predictable.all()):
        items = predictable.reshape(-1).nonzero().squeeze(1)
    elif masking in ("all", "random") and not bool(predictable.any(1).all()):
        rows = predictable.any(1)
        train_x = train_x[rows]
        train_keys = None if train_keys is None else train_keys[rows]
    # copies: order numbers (sentence, location) pairs as sentence * L + location
    n_items = len(items) if items is not None else len(train_x) * length if copies else len(train_x)
    if n_items == 0:
        raise ValueError(
            "nothing to predict: every training location is the mask token (a missing "
            "value), padding or weighted 0"
        )
    per_step = min(batch_size, n_items)
    if fused:
        stepper = FusedMLM(
            model,
            length,
            -(-per_step // length) if copies else per_step,
            weights,
            DropoutStream(0 if seed is None else seed),
            # copies run as whole compiled epochs only, on one thread
            threads=1 if copies else (num_threads or torch.get_num_threads()),
        )
        if stepper.threads == 1:  # whole epochs in compiled code, Adam included
            fused_adam = FusedAdam(
                stepper, lr=lr, weight_decay=weight_decay, eps=adam_eps, eps_hat=adam == "keras"
            )
            train_tokens = train_x.numpy()
        num_threads = 1  # the kernel runs its own threads; torch's GEMMs there are tiny
    optimizer = None  # the compiled epochs keep their own Adam
    if fused_adam is None:
        adam_kwargs = {"fused": True} if fused else {}
        optimizer = torch.optim.Adam(
            model.parameters(), lr=lr, weight_decay=weight_decay, eps=adam_eps, **adam_kwargs
        )
        if adam == "keras":
            optimizer = _KerasEpsilon(optimizer)
    hidden = context_mask_rate > 0  # each epoch's copies are then written out
    if hidden:
        context_rng = np.random.default_rng(0 if seed is None else seed)
        train_numpy = train_x.cpu().numpy()
    history = TrainingHistory()
    best_loss, best_state, stale = math.inf, None, 0
    start = time.perf_counter()
    with torch_threads(num_threads):
        bar = tqdm(range(epochs), desc="MLM", unit="epoch", disable=verbose <= 0, leave=False)
        for epoch in bar:
            model.train()
            order = torch.randperm(n_items, generator=generator)
            order = (order if items is None else items.cpu()[order]).to(device)
            total, count = 0.0, 0
            if hidden:  # (N * L, L): copy s * L + i predicts location i of sentence s
                epoch_copies = hide_context(
                    train_numpy, context_mask_rate, cfg.mask_id, context_rng
                )
            if fused_adam is not None:
                sizes = np.minimum(per_step, n_items - np.arange(0, n_items, per_step))
                try:
                    losses = stepper.train_epoch(
                        epoch_copies if hidden else train_tokens,
                        order.numpy(),
                        per_step,
                        fused_adam,
                        copies,
                        expanded=hidden,
                    )
                except FloatingPointError as error:
                    raise FloatingPointError(
                        f"MLM loss became non-finite at epoch {epoch + 1} ({error}); the weights "
                        "are kept from the last finite step. Try a lower learning rate."
                    ) from None
                history.masked_predictions += n_items if copies else int(train_x.numel())
                total, count = float(losses @ sizes), int(sizes.sum())
            for first in range(0, n_items if fused_adam is None else 0, per_step):
                idx = order[first : first + per_step]
                if hidden:
                    x = torch.from_numpy(epoch_copies[idx.cpu().numpy()]).to(device)
                else:
                    x = train_x[idx // length if copies else idx]
                keys = None if train_keys is None else train_keys[idx]
                if fused:  # overwrites .grad in place (its buffers are wired to it)
                    loss = torch.tensor(stepper.step(x))
                else:
                    optimizer.zero_grad(set_to_none=True)
                    if masking == "all":
                        loss = mlm_loss(model, x, keys, weights)
                    elif copies:
                        loss = masked_copies_loss(model, x, idx % length, weights)
                    else:
                        loss = random_mask_loss(model, x, generator, keys, mask_prob)
                if masking == "all":
                    history.masked_predictions += int(x.numel() if keys is None else keys.sum())
                elif copies:
                    history.masked_predictions += len(idx)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"MLM loss became {loss.item()} at epoch {epoch + 1}; the weights are kept "
                        "from the last finite step. Try a lower learning rate."
                    )
                if not fused:
                    loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                count += len(idx)
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
    if best_state is not None:
        model.load_state_dict(best_state)
    if weight_sums:
        with torch.no_grad():
            for total_w, p in zip(weight_sums, model.parameters(), strict=True):
                p.copy_(total_w / history.averaged_epochs)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


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
