"""A fused CPU path for all-locations MLM training of small one-layer models.

The reference math is :mod:`attnmoe.model.attention` with
:func:`~attnmoe.model.functional.mix_experts_one_pass`; this module computes the
same loss and every gradient (tests hold them equal to 1e-10 in float64) with
compiled loops (numba) and BLAS calls, in one of two ways (:func:`fused_path`):

- ``"tables"`` reads the model in its continuous-word-experts form. Per step it
  builds, once, the gate score table ``S[i, h, j, w]`` (masked location ``i``,
  head ``h``, expert location ``j`` holding word ``w``), its exponentials, and the
  expert table ``V[j, w, h, :]``, for the (location, word) pairs the batch holds;
  each prediction then gathers its gates and experts from them. A step costs
  about L x heads x L x (V + 1): the way for small tables.
- ``"tokens"`` computes each prediction's gates from the batch's own tokens: keys
  and values are affine in a token's input ``E[w] + P[j]``, so per step it
  projects the words (``E Wk^T``) and the locations (``P Wk^T + bk``) apart, and a
  sentence's keys and values are sums of those rows; each prediction scores its
  L keys, takes its softmax (shifted by its own max) and mixes. The gradients of
  the keys and values go back to the word and location rows the batch read. A
  step costs about predictions x L x heads x d_head, whatever the vocabulary.

Both then run the bert link and the output softmax over all predictions at
once, and go back the same way, with the dense products (``W_O``, the output
layer, weight gradients) as BLAS calls; the gradients of the tables (or of the
word and location rows) are chained back to the embeddings and projections by
hand, once per step. :meth:`FusedMLM.train_epoch` runs a whole epoch of such
steps, Adam included, in one compiled call.

Why: tabular models are tiny (L = 6 locations, d = 20) and trained in batches of
~21 rows. torch then spends its time dispatching a hundred small operators per
step (a 6 x 6 batched matmul per head and row costs more than its arithmetic),
autograd's bookkeeping and the Python loop dominate. Here a step costs about as
much as its arithmetic, with no allocation of note.

Layout, for vectorisation: the mixture works per prediction on whole ``h * dh``
rows (each head's gate repeated over its ``dh`` units); the link works per
feature across all predictions (``(d, P)`` arrays), so its loops run over P, not
over d = 20.

Continuous codes (:mod:`attnmoe.model.functional`): a batch may hold floating
codes. A fractional code (floor ``lo``, fraction ``t``) stands for the input
``(1 - t) E[lo] + t E[lo + 1]``. The tables path reads the tables at ``lo`` and
``lo + 1``: its gate is ``exp((1 - t) S[.., lo] + t S[.., lo + 1] - max)`` (the
scores interpolated, as the model interpolates the key), its expert
``(1 - t) V[j, lo] + t V[j, lo + 1]``; the tokens path interpolates the word rows
of its key and value the same way. As a target its loss is
``(1 - t) CE(lo) + t CE(lo + 1)``; the backward splits each gradient between
``lo`` and ``lo + 1`` by ``(1 - t, t)``. A batch without a fractional code runs
the word-id kernels unchanged.

Eligible models (:func:`fused_supported`): one layer, ReLU feed-forward, biases,
dense gates, no padding, CPU, ``d_model`` up to :data:`MAX_FUSED_D_MODEL`.
Everything else trains with the reference path.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import ThreadpoolController
from torch import Tensor

from ...model.attention import BidirectionalAttention
from ...model.functional import split_codes
from . import kernels

# The kernels loop per prediction over d; for wider models torch's BLAS path is the
# faster one.
MAX_FUSED_D_MODEL = 64

# The tables path's step follows the (location, word) pairs L x (V + 1), the tokens
# path's the batch. Measured with the paper's model (one BERT block, 5 heads of 4,
# d = 20), batches of 128 masked copies, float32, one thread, on the shared 2-core
# machine (benchmarks/probe_fused_limit.py, results in
# benchmarks/results/table_scale/fused_limit.md; tables / tokens ms per step): up to
# 282 pairs the tables path is the faster, 1.2-3x (24 pairs: 0.15 / 0.30; 66, the
# paper's simulation: 0.17 / 0.35; 260: 1.77 / 2.60; 282: 0.33 / 0.40); at 363-517
# pairs they are even (0.88 / 0.97, 0.53 / 0.54); from 715 pairs on the tokens path is
# the faster, 1.2-15x (715: 5.98 / 3.60; 1,081, 22 columns and one of 46 values: 2.22 /
# 1.12; 16,705, 64 columns of 256 values: 51.4 / 3.38). The rule: the tables path up to
# this many pairs.
MAX_TABLE_PATH_PAIRS = 300


def fused_supported(model: torch.nn.Module, length: int | None = None) -> bool:
    """Whether :class:`FusedMLM` computes exactly this model's MLM loss, and the
    model is narrow enough (``d_model``) for it to be the faster path."""
    return fused_refusal(model, length) is None


def fused_refusal(model: torch.nn.Module, length: int | None = None) -> str | None:
    """Why :class:`FusedMLM` does not train this model on sentences of ``length``
    locations (one short clause), or None when it does (:func:`fused_supported`)."""
    if not kernels.HAVE_NUMBA:
        return "numba is not installed"
    if type(model) is not BidirectionalAttention:
        return f"the fused engine trains BidirectionalAttention only, not {type(model).__name__}"
    cfg = model.config
    param = model.output.weight
    length = cfg.max_len if length is None else length
    checks = [
        (
            cfg.d_model <= MAX_FUSED_D_MODEL,
            f"d_model={cfg.d_model} is above its {MAX_FUSED_D_MODEL}",
        ),
        (cfg.n_layers == 1, f"n_layers={cfg.n_layers}, and it trains one layer"),
        (cfg.activation == "relu", f"activation={cfg.activation!r}, and it computes ReLU"),
        (cfg.bias, "the model has no biases"),
        (
            cfg.top_k is None or cfg.top_k >= cfg.max_len,
            f"top_k={cfg.top_k}, and it computes dense gates",
        ),
        (
            cfg.window is None or cfg.window >= cfg.max_len - 1,
            f"window={cfg.window}, and it reads whole sentences",
        ),
        (param.device.type == "cpu", f"the model is on {param.device}, and it runs on the CPU"),
        (
            param.dtype in (torch.float32, torch.float64),
            f"the dtype is {param.dtype}, and it takes float32 or float64",
        ),
    ]
    return next((why for ok, why in checks if not ok), None)


PATHS = ("tables", "tokens")


def fused_path(model: torch.nn.Module, length: int | None = None) -> str:
    """How :class:`FusedMLM` computes the mixtures of this model on sentences of
    ``length`` locations: ``"tables"`` (gate scores and experts of the (location, word)
    pairs, built once per step) up to :data:`MAX_TABLE_PATH_PAIRS` pairs, else
    ``"tokens"`` (from the batch's own tokens); the same loss and gradients."""
    cfg = model.config
    length = cfg.max_len if length is None else length
    return "tables" if length * (cfg.vocab_size + 1) <= MAX_TABLE_PATH_PAIRS else "tokens"


class DropoutStream:
    """The kernel's dropout generator (xorshift64*, 16-bit draws).

    ``P(drop)`` is ``p`` rounded to a multiple of 2**-16 (0.1 -> 0.100006) and
    kept units are scaled by the exact ``1 / (1 - P(drop))``, so the expectation
    is unchanged.
    """

    # why a generator of its own: the paper's model draws 40 dropout decisions per
    # masked prediction, and torch's CPU generator costs several times more per draw

    def __init__(self, seed: int = 0) -> None:
        self.state = np.zeros(1, dtype=np.uint64)
        if kernels.HAVE_NUMBA:
            kernels.seed_stream(self.state, int(seed) % (2**63))

    def fill(self, out: np.ndarray, p: float) -> None:
        """Fill ``out`` with multipliers: 0 with probability ~p, else ``1 / (1 - p)``."""
        threshold = round(p * 65536)
        if threshold == 0:
            out.fill(1.0)
        else:
            kernels.dropout_masks(self.state, out, threshold, 65536.0 / (65536 - threshold))


# The order in which the compiled code receives the weights (a tuple): the expert
# tables' inputs, then the weights applied per prediction (one partial per thread).
_TABLE_WEIGHTS = ("E", "P", "Wq", "bq", "Wk", "bk", "Wv", "bv")
_ROW_GRADIENTS = ("Wo", "bo", "Wout", "bout", "g1", "b1", "W1", "c1", "W2", "c2", "g2", "b2")
_WEIGHTS = _TABLE_WEIGHTS + _ROW_GRADIENTS


class _Workspace:
    """One thread's share of a batch: per-prediction work arrays and partial gradients.

    The mixture works per prediction (row-major ``(P, .)`` arrays, P = sentences x
    locations); the link works per feature across all predictions at once
    (feature-major ``(., P)`` arrays, so its short loops over d become long
    vectorised loops over P). Feature-major arrays are flat buffers whose first
    ``rows * P`` entries are viewed as ``(rows, P)`` for a batch of P predictions.
    """

    def __init__(self, fused: FusedMLM, max_rows: int) -> None:
        cfg, z = fused.model.config, fused.np_dtype
        length, d, h, dh = fused.length, cfg.d_model, cfg.n_heads, cfg.d_head
        n_words, n_ff = cfg.vocab_size + 1, cfg.d_ff if fused.bert else 1
        n_pred = max_rows * length
        rows = {  # per-prediction rows
            "A": (n_pred, length, h * dh),  # gates, repeated over each head's dh units
            "O": (n_pred, h * dh),  # mixture, the input of W_O
            "GL": (n_pred, cfg.vocab_size),  # logits, then d loss / d logits
            "GO": (n_pred, h * dh),  # d loss / d mixture
        }
        columns = {  # feature-major: (this many rows, P)
            "C": d,  # W_O output
            "N1": d,  # normalised, LayerNorm 1
            "H1": d,  # feed-forward input
            "U": n_ff,  # feed-forward pre-activation
            "RELU": n_ff,
            "N2": d,  # normalised, LayerNorm 2
            "INV": 2,  # 1 / std of both LayerNorms
            "HF": d,  # output-layer input
            "G": d,  # d loss / d HF
            "GF": d,  # d loss / d feed-forward output
            "GU": n_ff,  # d loss / d feed-forward pre-activation
            "GC": d,  # d loss / d W_O output
            "DROP": 2 * d,  # dropout multipliers of the two residual branches
        }
        self.row_arrays = tuple(np.zeros(shape, z) for shape in rows.values())
        self.columns = tuple(np.zeros(size * n_pred, z) for size in columns.values())
        self.drop = self.columns[-1]
        self.drop.fill(1.0)
        if fused.per_token:  # the word and location parts' gradients; no tables
            empty = (np.zeros((0, 0, 0, 0), z), np.zeros((0, 0, 0), z), np.zeros((0, 0), z))
            self.table_grads = empty
            self.token_grads = (
                *(np.zeros(a.shape, z) for a in fused.token_tables[:4]),
                np.zeros((length, h * dh), z),  # the scaled queries'
                np.zeros((length, d), z),  # the residual's (the mask's input)
            )
        else:
            self.table_grads = (
                np.zeros((length, h, length, n_words), z),  # gate scores
                np.zeros((length, n_words, h * dh), z),  # experts (values)
                np.zeros((length, d), z),  # the residual
            )
            self.token_grads = tuple(np.zeros((0, 0), z) for _ in range(6))
        self.grads = {k: np.zeros(fused.params[k].shape, z) for k in _ROW_GRADIENTS}
        self.row_grads = tuple(self.grads[k] for k in _ROW_GRADIENTS)

    def fill_dropout(self, fused: FusedMLM, n_pred: int, rate: float) -> None:
        """This slice's dropout multipliers (all ones without dropout)."""
        drop = self.drop[: 2 * fused.model.config.d_model * n_pred]
        if rate > 0:
            fused.dropout.fill(drop, rate)
        elif self.drop[0] != 1:  # a kept unit is 1 / (1 - p), never 1
            self.drop.fill(1.0)

    def run(
        self,
        fused: FusedMLM,
        tokens: np.ndarray,
        frac: np.ndarray | None,
        weights: np.ndarray,
        inv_total: float,
    ) -> float:
        """Forward and backward of every location of ``tokens`` (a slice of the batch)
        masked alone, each weighted by ``weights`` (flat, sentence-major); returns its
        loss share. ``frac``: the fractions of the codes whose floors ``tokens`` holds
        (None: word ids)."""
        n_pred = tokens.size
        if fused.per_token:
            return kernels.tokens_step(
                tokens, fused.no_frac if frac is None else frac, frac is not None,
                fused.pred_rows[:n_pred], fused.pred_locs[:n_pred], fused.model.config.n_heads,
                fused.weight_arrays, self.row_grads, fused.token_tables, self.row_arrays,
                self.columns, self.token_grads, weights, fused.model.config.mask_id, inv_total,
                fused.bert, fused.eps,
            )  # fmt: skip
        return kernels.rows_step(
            tokens, fused.no_frac if frac is None else frac, frac is not None,
            fused.pred_rows[:n_pred], fused.pred_locs[:n_pred], fused.weight_arrays,
            self.row_grads, fused.tables, self.row_arrays, self.columns, self.table_grads,
            weights, fused.model.config.mask_id, inv_total, fused.bert, fused.eps,
        )  # fmt: skip


class FusedMLM:
    """All-locations MLM steps of one model through the fused kernel.

    Built once per fit: it keeps numpy views of the parameters (updated in place
    by the optimizer), gradient buffers wired to each parameter's ``.grad``,
    and the work arrays for batches of up to ``max_rows`` sentences, so a step
    costs a handful of compiled calls and no allocation.

    Parameters
    ----------
    model
        A :class:`BidirectionalAttention` for which :func:`fused_supported` holds.
    length
        Sentence length ``L`` of the training data.
    max_rows
        Largest batch (sentences) :meth:`step` will see.
    position_weights
        ``(L,)`` loss weight per location, or ``(N, L)`` per sentence and location
        of the ``tokens`` :meth:`train_epoch` takes (:meth:`step` then takes each
        batch's own); uniform when None.
    dropout
        Dropout generator; needed when the model trains with dropout > 0.
    num_threads
        The batch's sentences are split into this many slices computed at once
        on as many threads (the compiled parts release the GIL); results equal
        one thread's up to the order of floating-point sums.
    path
        ``"tables"`` or ``"tokens"``: how the mixtures are computed (the same loss
        and gradients up to rounding); None takes :func:`fused_path`'s choice.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        length: int,
        max_rows: int,
        position_weights: Tensor | None = None,
        dropout: DropoutStream | None = None,
        num_threads: int = 1,
        path: str | None = None,
    ) -> None:
        if not fused_supported(model, length):
            raise ValueError("this model is not supported by the fused kernel (fused_supported)")
        cfg = model.config
        if path not in (None, *PATHS):
            raise ValueError(f"path must be one of {PATHS} or None, got {path!r}")
        self.path = fused_path(model, length) if path is None else path
        self.per_token = self.path == "tokens"
        self.model, self.length, self.max_rows = model, length, max_rows
        self.dropout, self.num_threads = dropout, max(1, min(int(num_threads), max_rows))
        self.dtype = model.output.weight.dtype
        self.np_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        self.eps = float(cfg.layer_norm_eps)
        att = model.layers[0].attention
        link = model.layers[0].output.link
        self.bert = link is not None
        named = {
            "E": model.token_embedding.weight,
            "P": model.position_embedding.weight,
            "Wq": att.query.weight,
            "bq": att.query.bias,
            "Wk": att.key.weight,
            "bk": att.key.bias,
            "Wv": att.value.weight,
            "bv": att.value.bias,
            "Wo": att.out.weight,
            "bo": att.out.bias,
            "Wout": model.output.weight,
            "bout": model.output.bias,
        }
        if self.bert:
            named |= {
                "g1": link.attention_norm.weight,
                "b1": link.attention_norm.bias,
                "W1": link.feed_forward[0].weight,
                "c1": link.feed_forward[0].bias,
                "W2": link.feed_forward[2].weight,
                "c2": link.feed_forward[2].bias,
                "g2": link.output_norm.weight,
                "b2": link.output_norm.bias,
            }
        self.named = named
        self.weights_t = {k: p.detach() for k, p in named.items()}  # live: Adam updates in place
        if not self.bert:  # the kernel's link arguments: harmless placeholders
            for k, shape in {"g1": (1,), "b1": (1,), "W1": (1, 1), "c1": (1,)}.items():
                self.weights_t[k] = torch.zeros(shape, dtype=self.dtype)
            for k, shape in {"W2": (1, 1), "c2": (1,), "g2": (1,), "b2": (1,)}.items():
                self.weights_t[k] = torch.zeros(shape, dtype=self.dtype)
        self.params = {k: v.numpy() for k, v in self.weights_t.items()}
        for p in named.values():
            p.grad = torch.zeros_like(p)
        self.grads = {k: p.grad.numpy() for k, p in named.items()}
        weights = torch.ones(length) if position_weights is None else position_weights
        # (1, L) per location or (N, L) per sentence: the kernel's rows of weights
        self.loss_weights = weights.detach().to(self.dtype).reshape(-1, length).numpy().copy()

        h, dh, d = cfg.n_heads, cfg.d_head, cfg.d_model
        n_words, z = cfg.vocab_size + 1, self.np_dtype
        self.scale = 1.0 / math.sqrt(dh)
        # each path's per-step arrays; the other path's are empty placeholders (the
        # compiled epoch takes both)
        pairs = (0, 0) if self.per_token else (length, n_words)
        words, lengths, hd = (n_words, length, h * dh) if self.per_token else (0, 0, 0)
        self.tables = (
            np.zeros((*pairs, d), z),  # inputs E[w] + P[j]
            np.zeros((length, d), z),  # the residual: the masked location's input
            np.zeros((length, h * dh), z),  # queries, scaled, at the mask
            np.zeros((*pairs, h * dh), z),  # keys
            np.zeros((*pairs, h * dh), z),  # values
            np.zeros((pairs[0], h, *pairs), z),  # gate scores
            # exp(score - max over the (i, h) slice), repeated over the head's dh units
            # so that the mixture runs over whole h * dh rows
            np.zeros((pairs[0], *pairs, h * dh), z),
            np.zeros(pairs, np.bool_),  # the (location, word) pairs the batch reads
            np.zeros((length, h), z),  # the max of each (i, h) score slice
        )
        self.token_tables = (
            np.zeros((words, hd), z),  # word parts of the keys, E[w] Wk^T
            np.zeros((words, hd), z),  # and of the values
            np.zeros((lengths, hd), z),  # location parts, P[j] Wk^T + bk
            np.zeros((lengths, hd), z),
            np.zeros((length, d), z),  # the residual: the mask's input E[m] + P[i]
            np.zeros((lengths, hd), z),  # the mask's scaled query at each location
            np.zeros((lengths, hd), z),  # the mask's key
            np.zeros((lengths, hd), z),  # the mask's value
        )
        self.no_frac = np.zeros((1, length), z)  # the fractions' argument of word-id batches
        self.weight_arrays = tuple(self.params[k] for k in _WEIGHTS)
        self.table_weight_grads = tuple(self.grads[k] for k in _TABLE_WEIGHTS)
        # every location of every sentence: prediction p = sentence * L + location
        self.pred_rows = np.repeat(np.arange(max_rows), length)
        self.pred_locs = np.tile(np.arange(length), max_rows)
        per_thread = -(-max_rows // self.num_threads)
        self.workspaces = [_Workspace(self, per_thread) for _ in range(self.num_threads)]

    def _dropout_rate(self) -> float:
        cfg = self.model.config
        if not (self.model.training and cfg.dropout > 0):
            return 0.0
        if self.dropout is None:
            raise ValueError("a model training with dropout needs a DropoutStream")
        return cfg.dropout

    def step(self, x: Tensor, weights: Tensor | None = None) -> float:
        """Set every parameter's ``.grad`` to the gradient of the batch's mean
        weighted loss (each location of ``x`` masked alone); return the loss.

        ``x``: word ids, or floating codes (checked by the caller, as
        :func:`~attnmoe.model.functional.check_codes` does). ``weights``: the
        batch's loss weights, ``(L,)`` or ``(n, L)``; None takes those given at
        construction (per location, or per sentence when ``x`` has as many
        sentences)."""
        cfg = self.model.config
        n, length = x.shape
        if length != self.length or n > self.max_rows:
            raise ValueError(f"batch {tuple(x.shape)} exceeds ({self.max_rows}, {self.length})")
        lo, t = split_codes(x)
        tokens = lo.contiguous().numpy()
        frac = None if t is None else t.to(self.dtype).contiguous().numpy()
        if weights is None:
            batch_weights = self.loss_weights
        else:
            batch_weights = weights.detach().to(self.dtype).numpy()
        if batch_weights.shape not in ((length,), (1, length), (n, length)):
            raise ValueError(f"weights of shape {batch_weights.shape} for a batch {(n, length)}")
        batch_weights = np.broadcast_to(batch_weights, tokens.shape)
        flat_weights = np.ascontiguousarray(batch_weights).reshape(-1)  # p = sentence * L + j
        total = float(((tokens != cfg.mask_id) * batch_weights).sum())
        if total <= 0:
            raise ValueError("nothing to predict: every location holds the mask token")
        with _one_blas_thread():
            return self._step(tokens, frac, flat_weights, total)

    def _step(
        self, tokens: np.ndarray, frac: np.ndarray | None, flat_weights: np.ndarray, total: float
    ) -> float:
        cfg = self.model.config
        n, length = tokens.shape
        rate = self._dropout_rate()
        if self.per_token:
            kernels.token_tables_forward(
                self.weight_arrays, cfg.mask_id, self.scale, self.token_tables
            )
        else:
            used = self.tables[7]
            kernels.mark_used(tokens, cfg.mask_id, used)
            if frac is not None:
                kernels.mark_neighbours(tokens, frac, used)
            kernels.tables_forward(self.weight_arrays, cfg.mask_id, self.scale, self.tables)

        # each thread takes a contiguous slice of sentences (and their dropout masks)
        bounds = [n * k // self.num_threads for k in range(self.num_threads + 1)]
        jobs = [
            (
                ws,
                tokens[first:last],
                None if frac is None else frac[first:last],
                flat_weights[first * length : last * length],
            )
            for ws, first, last in zip(self.workspaces, bounds, bounds[1:], strict=False)
            if last > first
        ]
        for ws, part, _, _ in jobs:  # drawn in slice order: the stream does not depend on timing
            ws.fill_dropout(self, part.size, rate)
        if len(jobs) == 1:
            ws, part, part_frac, w = jobs[0]
            losses = [ws.run(self, part, part_frac, w, 1.0 / total)]
        else:
            pool = _thread_pool(self.num_threads)
            futures = [
                pool.submit(ws.run, self, part, part_frac, w, 1.0 / total)
                for ws, part, part_frac, w in jobs
            ]
            losses = [f.result() for f in futures]
        spaces = [job[0] for job in jobs]

        kind = "token_grads" if self.per_token else "table_grads"
        table_grads = getattr(spaces[0], kind)
        if len(spaces) > 1:
            parts = zip(*(getattr(ws, kind) for ws in spaces), strict=True)
            table_grads = tuple(sum(part) for part in parts)
        backward = kernels.token_tables_backward if self.per_token else kernels.tables_backward
        tables = self.token_tables if self.per_token else self.tables
        backward(
            table_grads, self.weight_arrays, cfg.mask_id, self.scale, tables,
            self.table_weight_grads,
        )  # fmt: skip
        for name in _ROW_GRADIENTS:
            if name in self.named:
                grad = self.named[name].grad
                grad.copy_(torch.from_numpy(spaces[0].grads[name]))
                for ws in spaces[1:]:
                    grad.add_(torch.from_numpy(ws.grads[name]))
        return float(sum(losses))

    def train_epoch(
        self,
        tokens: np.ndarray,
        order: np.ndarray,
        per_step: int,
        adam: FusedAdam,
        copies: bool = False,
        expanded: bool = False,
    ) -> np.ndarray:
        """One pass of Adam steps, all in compiled code (one thread).

        Rows (``copies=False``): ``order`` permutes the sentences of ``tokens``; a
        step takes the next ``per_step`` sentences and predicts every location of
        each (:meth:`step`). Copies: ``order`` permutes the (sentence, location)
        pairs, numbered ``sentence * L + location``; a step takes the next
        ``per_step`` pairs, i.e. a batch of masked copies drawn from all
        sentences (the paper's Keras training). ``expanded`` (copies only):
        ``tokens`` holds every copy's own input, ``(N * L, L)``, row
        ``sentence * L + location`` (e.g. with context hidden:
        :func:`attnmoe.training.hide_context`). ``tokens`` are word ids or floating
        codes (as :meth:`step`). Each step is followed by ``adam``'s update of the
        weights in place. Returns each step's loss.

        Raises
        ------
        FloatingPointError
            If a step's loss is not finite; that step's update is not applied.
        ValueError
            If a batch holds nothing to predict (every target masked).
        """
        if self.num_threads != 1:
            raise ValueError("train_epoch runs on one thread; use step() with num_threads > 1")
        limit = self.max_rows * self.length if copies else self.max_rows
        if not 1 <= per_step <= limit:
            raise ValueError(f"per_step must be in [1, {limit}], got {per_step}")
        tokens, frac = self._split_codes(np.asarray(tokens))
        order = np.ascontiguousarray(order, dtype=np.int64)
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise ValueError(f"tokens must be (N, {self.length}), got {tokens.shape}")
        if expanded and not copies:
            raise ValueError("expanded inputs are masked copies: they need copies=True")
        if expanded and len(tokens) % self.length:
            raise ValueError(f"expanded copies come {self.length} per sentence, got {len(tokens)}")
        bound = len(tokens) if expanded else tokens.size if copies else len(tokens)
        # the row of tokens that holds an item's input: item // stride
        stride = self.length if copies and not expanded else 1
        if order.size and (order.min() < 0 or order.max() >= bound):
            raise ValueError(f"order must index [0, {bound}), got [{order.min()}, {order.max()}]")
        n_sentences = len(tokens) // self.length if expanded else len(tokens)
        if len(self.loss_weights) not in (1, n_sentences):
            raise ValueError(
                f"position_weights per sentence have {len(self.loss_weights)} rows for "
                f"{n_sentences} sentences"
            )
        rate = self._dropout_rate()
        ws = self.workspaces[0]
        ws.fill_dropout(self, 0, 0.0)  # all ones, in case the stream is not used
        threshold = round(rate * 65536)
        state = self.dropout.state if self.dropout is not None else np.ones(1, np.uint64)
        grads = self.table_weight_grads + ws.row_grads
        groups = tuple(zip(self.weight_arrays, grads, adam.first, adam.second, strict=True))
        losses = np.zeros(-(-len(order) // per_step))
        train_epoch = kernels.train_epoch_tokens if self.per_token else kernels.train_epoch_tables
        with _one_blas_thread():
            steps, status = train_epoch(
                tokens, self.no_frac if frac is None else frac, frac is not None, order,
                per_step, copies, stride, self.weight_arrays, grads, groups, self.tables,
                ws.row_arrays, ws.columns, ws.table_grads, self.loss_weights,
                self.model.config.mask_id, self.bert, self.eps, self.scale, state, threshold,
                65536.0 / (65536 - threshold), adam.hyper(), losses, self.model.config.n_heads,
                self.token_tables, ws.token_grads,
            )  # fmt: skip
        adam.steps += steps
        if status == 1:
            raise FloatingPointError(f"the MLM loss became {losses[steps]} at step {steps + 1}")
        if status == 2:
            raise ValueError("nothing to predict: every target of a batch is the mask token")
        return losses

    def _split_codes(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Word ids as int64, or floating codes as their floors (int64) and fractions
        (None when every code is whole: the word-id path)."""
        if tokens.dtype.kind != "f":
            return np.ascontiguousarray(tokens, dtype=np.int64), None
        floor = np.floor(tokens)
        frac = tokens - floor
        words = np.ascontiguousarray(floor, dtype=np.int64)
        if not frac.any():
            return words, None
        return words, np.ascontiguousarray(frac, dtype=self.np_dtype)


class FusedAdam:
    """Adam (``torch.optim.Adam``'s update, L2 weight decay) kept by :class:`FusedMLM`
    for :meth:`FusedMLM.train_epoch`: the moments of every weight, and the step count.

    ``eps_hat=True`` adds ``eps`` to the uncorrected root second moment, as Keras's
    Adam does (torch adds it to the bias-corrected one).
    """

    def __init__(
        self,
        fused: FusedMLM,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        eps_hat: bool = False,
    ) -> None:
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.eps_hat = eps_hat
        self.first = tuple(np.zeros_like(w) for w in fused.weight_arrays)
        self.second = tuple(np.zeros_like(w) for w in fused.weight_arrays)
        self.steps = 0

    def hyper(self) -> np.ndarray:
        """``[lr, beta1, beta2, eps, weight_decay, steps taken, eps_hat]`` for the kernel."""
        b1, b2 = self.betas
        return np.array(
            [self.lr, b1, b2, self.eps, self.weight_decay, self.steps, float(self.eps_hat)],
            np.float64,
        )


_BLAS: dict = {"controller": None, "users": 0, "limiter": None}
_BLAS_LOCK = threading.Lock()


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run the kernels' BLAS calls (numba's ``np.dot``: SciPy's OpenBLAS) on one thread
    while any fused step or epoch runs; the setting before is restored after the last."""
    # OpenBLAS runs a product on every core by default, next to the engine's own
    # threads; on a loaded 2-core machine a step's projections took 30 ms instead of 0.1
    with _BLAS_LOCK:
        if _BLAS["controller"] is None:
            import scipy.linalg.cython_blas  # noqa: F401 - loaded, so that the scan finds it

            _BLAS["controller"] = ThreadpoolController()
        if _BLAS["users"] == 0:
            _BLAS["limiter"] = _BLAS["controller"].limit(limits=1, user_api="blas")
        _BLAS["users"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS["users"] -= 1
            if _BLAS["users"] == 0:
                _BLAS["limiter"].restore_original_limits()


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL[0] < workers:
        # OpenMP thread counts are per thread: keep each worker's torch GEMMs on one
        _POOL = (
            workers,
            ThreadPoolExecutor(
                max_workers=workers,
                thread_name_prefix="attnmoe-fused",
                initializer=torch.set_num_threads,
                initargs=(1,),
            ),
        )
    return _POOL[1]


def fused_mlm_step(
    model: torch.nn.Module,
    x: Tensor,
    position_weights: Tensor | None = None,
    dropout: DropoutStream | None = None,
    num_threads: int = 1,
    path: str | None = None,
) -> Tensor:
    """One-off :meth:`FusedMLM.step`: the loss of every location of ``x`` masked
    alone, its gradients written to ``.grad`` (replacing what was there).

    Equals ``mlm_loss(model, x, position_weights=...)`` followed by ``backward()``
    (in training mode the dropout masks come from ``dropout``); ``x`` holds word
    ids or floating codes; ``path`` as :class:`FusedMLM`'s. Training loops
    should build one :class:`FusedMLM` and call its ``step``.
    """
    fused = FusedMLM(model, x.shape[1], len(x), position_weights, dropout, num_threads, path)
    return torch.tensor(fused.step(x), dtype=model.output.weight.dtype)
