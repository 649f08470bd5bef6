"""A fused CPU path for all-locations MLM training of small one-layer models.

The reference math is :mod:`attnmoe.model.attention` with
:func:`~attnmoe.model.functional.mix_experts_one_pass`; this module computes the
same loss and every gradient (tests hold them equal to 1e-10 in float64) but
reads the model in its continuous-word-experts form. Per step it builds, once,
the gate score table ``S[i, h, j, w]`` (masked location ``i``, head ``h``, expert
location ``j`` holding word ``w``) and the expert table ``V[j, w, h, :]``, for the
(location, word) pairs the batch holds; compiled loops (numba) then gather from
them per prediction and mix, run the bert link and the output softmax over all
predictions at once, and go back the same way, with the dense products
(``W_O``, the output layer, weight gradients) as BLAS calls. Gradients of the
tables are chained back to the embeddings and projections by hand, also once
per step. :meth:`FusedMLM.train_epoch` runs a whole epoch of such steps, Adam
included, in one compiled call.

Why: tabular models are tiny (L = 6 locations, d = 20) and trained in batches of
~21 rows. torch then spends its time dispatching a hundred small operators per
step (a 6 x 6 batched matmul per head and row costs more than its arithmetic),
autograd's bookkeeping and the Python loop dominate. Here a step costs about as
much as its arithmetic, with no allocation of note.

Layout, for vectorisation: the mixture works per prediction on whole ``h * dh``
rows (each head's gate repeated over its ``dh`` units); the link works per
feature across all predictions (``(d, P)`` arrays), so its loops run over P, not
over d = 20.

Eligible models (:func:`fused_supported`): one layer, ReLU feed-forward, biases,
dense gates, no padding, CPU. Everything else trains with the reference path.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

try:  # numba is a dependency, but a broken install must not break the package
    import numba
    from numba import literal_unroll

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    _HAVE_NUMBA = False


# The kernel loops per prediction over d and reads (location, word) tables; for
# text-sized models torch's BLAS path is the faster one.
MAX_FUSED_D_MODEL = 64
MAX_FUSED_TABLE = 2**16


def fused_supported(model: torch.nn.Module, length: int | None = None) -> bool:
    """Whether :class:`FusedMLM` computes exactly this model's MLM loss, and the
    model is small enough for it to be the faster path."""
    from .attention import BidirectionalAttention

    if not _HAVE_NUMBA or type(model) is not BidirectionalAttention:
        return False
    cfg = model.config
    param = model.output.weight
    length = cfg.max_len if length is None else length
    table = length * cfg.n_heads * length * (cfg.vocab_size + 1)
    return (
        cfg.d_model <= MAX_FUSED_D_MODEL
        and table <= MAX_FUSED_TABLE
        and cfg.n_layers == 1
        and cfg.activation == "relu"
        and cfg.bias
        and (cfg.top_k is None or cfg.top_k >= cfg.max_len)
        and (cfg.window is None or cfg.window >= cfg.max_len - 1)
        and param.device.type == "cpu"
        and param.dtype in (torch.float32, torch.float64)
    )


class DropoutStream:
    """The kernel's dropout generator (xorshift64*, 16-bit draws).

    The paper's model draws 40 dropout decisions per masked prediction; torch's
    CPU generator costs 8-13 ns each here, this one about 2 ns. ``P(drop)`` is ``p``
    rounded to a multiple of 2**-16 (0.1 -> 0.100006) and kept units are scaled
    by the exact ``1 / (1 - P(drop))``, so the expectation is unchanged.
    """

    def __init__(self, seed: int = 0) -> None:
        self.state = np.zeros(1, dtype=np.uint64)
        if _HAVE_NUMBA:
            _seed(self.state, int(seed) % (2**63))

    def fill(self, out: np.ndarray, p: float) -> None:
        """Fill ``out`` with multipliers: 0 with probability ~p, else ``1 / (1 - p)``."""
        threshold = round(p * 65536)
        if threshold == 0:
            out.fill(1.0)
        else:
            _dropout_masks(self.state, out, threshold, 65536.0 / (65536 - threshold))


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
        self.g_scores = np.zeros((length, h, length, n_words), z)
        self.g_values = np.zeros((length, n_words, h * dh), z)
        self.g_residual = np.zeros((length, d), z)
        self.table_grads = (self.g_scores, self.g_values, self.g_residual)
        self.grads = {k: np.zeros(fused.params[k].shape, z) for k in _ROW_GRADIENTS}
        self.row_grads = tuple(self.grads[k] for k in _ROW_GRADIENTS)

    def fill_dropout(self, fused: FusedMLM, n_pred: int, rate: float) -> None:
        """This slice's dropout multipliers (all ones without dropout)."""
        drop = self.drop[: 2 * fused.model.config.d_model * n_pred]
        if rate > 0:
            fused.dropout.fill(drop, rate)
        elif self.drop[0] != 1:  # a kept unit is 1 / (1 - p), never 1
            self.drop.fill(1.0)

    def run(self, fused: FusedMLM, tokens: np.ndarray, inv_total: float) -> float:
        """Forward and backward of every location of ``tokens`` (a slice of the batch)
        masked alone; returns its loss share."""
        n_pred = tokens.size
        return _rows_step(
            tokens, fused.pred_rows[:n_pred], fused.pred_locs[:n_pred], fused.weight_arrays,
            self.row_grads, fused.tables, self.row_arrays, self.columns, self.table_grads,
            fused.position_weights, fused.model.config.mask_id, inv_total, fused.bert, fused.eps,
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
        ``(L,)`` loss weight per location; uniform when None.
    dropout
        Dropout generator; needed when the model trains with dropout > 0.
    threads
        The batch's sentences are split into this many slices computed at once
        on as many threads (the compiled parts release the GIL); results equal
        one thread's up to the order of floating-point sums.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        length: int,
        max_rows: int,
        position_weights: Tensor | None = None,
        dropout: DropoutStream | None = None,
        threads: int = 1,
    ) -> None:
        if not fused_supported(model, length):
            raise ValueError("this model is not supported by the fused kernel (fused_supported)")
        cfg = model.config
        self.model, self.length, self.max_rows = model, length, max_rows
        self.dropout, self.threads = dropout, max(1, min(int(threads), max_rows))
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
        self.position_weights = weights.detach().to(self.dtype).contiguous().numpy()

        h, dh, d = cfg.n_heads, cfg.d_head, cfg.d_model
        n_words, z = cfg.vocab_size + 1, self.np_dtype
        self.scale = 1.0 / math.sqrt(dh)
        self.inputs = np.zeros((length, n_words, d), z)  # E[w] + P[j]
        self.residual = np.zeros((length, d), z)  # the masked location's input
        self.queries = np.zeros((length, h * dh), z)  # scaled, at the mask
        self.keys = np.zeros((length, n_words, h * dh), z)
        self.values = np.zeros((length, n_words, h * dh), z)
        self.scores = np.zeros((length, h, length, n_words), z)
        # exp(score - max over the (i, h) slice), repeated over the head's dh units so
        # that the mixture runs over whole h * dh rows
        self.scores_exp = np.zeros((length, length, n_words, h * dh), z)
        self.used = np.zeros((length, n_words), np.bool_)  # (location, word) pairs in the batch
        self.tables = (
            self.inputs, self.residual, self.queries, self.keys, self.values, self.scores,
            self.scores_exp, self.used,
        )  # fmt: skip
        self.weight_arrays = tuple(self.params[k] for k in _WEIGHTS)
        self.table_weight_grads = tuple(self.grads[k] for k in _TABLE_WEIGHTS)
        # every location of every sentence: prediction p = sentence * L + location
        self.pred_rows = np.repeat(np.arange(max_rows), length)
        self.pred_locs = np.tile(np.arange(length), max_rows)
        per_thread = -(-max_rows // self.threads)
        self.workspaces = [_Workspace(self, per_thread) for _ in range(self.threads)]

    def _dropout_rate(self) -> float:
        cfg = self.model.config
        if not (self.model.training and cfg.dropout > 0):
            return 0.0
        if self.dropout is None:
            raise ValueError("a model training with dropout needs a DropoutStream")
        return cfg.dropout

    def step(self, x: Tensor) -> float:
        """Set every parameter's ``.grad`` to the gradient of the batch's mean
        weighted loss (each location of ``x`` masked alone); return the loss."""
        cfg = self.model.config
        n, length = x.shape
        if length != self.length or n > self.max_rows:
            raise ValueError(f"batch {tuple(x.shape)} exceeds ({self.max_rows}, {self.length})")
        tokens = x.contiguous().numpy()
        total = float(((tokens != cfg.mask_id) * self.position_weights).sum())
        if total <= 0:
            raise ValueError("nothing to predict: every location holds the mask token")
        rate = self._dropout_rate()
        _mark_used(tokens, cfg.mask_id, self.used)
        _tables_forward(self.weight_arrays, cfg.mask_id, self.scale, self.tables)

        # each thread takes a contiguous slice of sentences (and their dropout masks)
        bounds = [n * k // self.threads for k in range(self.threads + 1)]
        jobs = [
            (ws, tokens[lo:hi])
            for ws, lo, hi in zip(self.workspaces, bounds, bounds[1:], strict=False)
            if hi > lo
        ]
        for ws, t in jobs:  # drawn in slice order: the stream does not depend on timing
            ws.fill_dropout(self, t.size, rate)
        if len(jobs) == 1:
            losses = [jobs[0][0].run(self, jobs[0][1], 1.0 / total)]
        else:
            pool = _thread_pool(self.threads)
            futures = [pool.submit(ws.run, self, t, 1.0 / total) for ws, t in jobs]
            losses = [f.result() for f in futures]
        spaces = [job[0] for job in jobs]

        table_grads = spaces[0].table_grads
        if len(spaces) > 1:
            parts = zip(*(ws.table_grads for ws in spaces), strict=True)
            table_grads = tuple(sum(part) for part in parts)
        _tables_backward(
            table_grads, self.weight_arrays, cfg.mask_id, self.scale, self.tables,
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
        :func:`attnmoe.model.training.hide_context`). Each step is followed by
        ``adam``'s update of the weights in place. Returns each step's loss.

        Raises
        ------
        FloatingPointError
            If a step's loss is not finite; that step's update is not applied.
        ValueError
            If a batch holds nothing to predict (every target masked).
        """
        if self.threads != 1:
            raise ValueError("train_epoch runs on one thread; use step() with threads > 1")
        limit = self.max_rows * self.length if copies else self.max_rows
        if not 1 <= per_step <= limit:
            raise ValueError(f"per_step must be in [1, {limit}], got {per_step}")
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
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
        rate = self._dropout_rate()
        ws = self.workspaces[0]
        ws.fill_dropout(self, 0, 0.0)  # all ones, in case the stream is not used
        threshold = round(rate * 65536)
        state = self.dropout.state if self.dropout is not None else np.ones(1, np.uint64)
        grads = self.table_weight_grads + ws.row_grads
        groups = tuple(zip(self.weight_arrays, grads, adam.first, adam.second, strict=True))
        losses = np.zeros(-(-len(order) // per_step))
        steps, status = _train_epoch(
            tokens, order, per_step, copies, stride, self.weight_arrays, grads, groups, self.tables,
            ws.row_arrays, ws.columns, ws.table_grads, self.position_weights,
            self.model.config.mask_id, self.bert, self.eps, self.scale, state, threshold,
            65536.0 / (65536 - threshold), adam.hyper(), losses,
        )  # fmt: skip
        adam.steps += steps
        if status == 1:
            raise FloatingPointError(f"the MLM loss became {losses[steps]} at step {steps + 1}")
        if status == 2:
            raise ValueError("nothing to predict: every target of a batch is the mask token")
        return losses


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
    threads: int = 1,
) -> Tensor:
    """One-off :meth:`FusedMLM.step`: the loss of every location of ``x`` masked
    alone, its gradients written to ``.grad`` (replacing what was there).

    Equals ``mlm_loss(model, x, position_weights=...)`` followed by ``backward()``
    (in training mode the dropout masks come from ``dropout``). Training loops
    should build one :class:`FusedMLM` and call its ``step``.
    """
    fused = FusedMLM(model, x.shape[1], len(x), position_weights, dropout, threads)
    return torch.tensor(fused.step(x), dtype=model.output.weight.dtype)


# fast-math that may reorder sums, but keeps NaN and inf meaning (a diverged
# loss must surface as NaN, not be optimised away)
_FAST = {"reassoc", "contract", "arcp", "nsz", "afn"}

if _HAVE_NUMBA:

    @numba.njit(cache=True)
    def _seed(state, seed):  # pragma: no cover - compiled
        # splitmix64 of the seed, so nearby seeds give unrelated streams
        z = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        state[0] = z if z != np.uint64(0) else np.uint64(1)

    @numba.njit(cache=True)
    def _dropout_masks(state, out, threshold, keep):  # pragma: no cover - compiled
        # xorshift64*, 16 bits per draw: P(drop) = threshold / 2**16
        flat = out.reshape(-1)
        n = flat.shape[0]
        z = state[0]
        limit = np.uint64(threshold)
        low16 = np.uint64(0xFFFF)
        for start in range(0, n, 4):
            z ^= z >> np.uint64(12)
            z ^= z << np.uint64(25)
            z ^= z >> np.uint64(27)
            bits = z * np.uint64(0x2545F4914F6CDD1D)
            if start + 4 <= n:
                flat[start] = 0.0 if (bits & low16) < limit else keep
                flat[start + 1] = 0.0 if ((bits >> np.uint64(16)) & low16) < limit else keep
                flat[start + 2] = 0.0 if ((bits >> np.uint64(32)) & low16) < limit else keep
                flat[start + 3] = 0.0 if (bits >> np.uint64(48)) < limit else keep
            else:
                for t in range(n - start):
                    draw = (bits >> np.uint64(16 * t)) & low16
                    flat[start + t] = 0.0 if draw < limit else keep
        state[0] = z

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mix_forward(x, rows, locs, mask_id, S, S_exp, V, A, O):  # pragma: no cover - compiled
        # gates pi[h, j] = softmax_j S[i, h, j, x_j] (x_i the mask) and o_h = sum_j pi V[j, x_j, h].
        # S_exp = exp(S - max over the (i, h) table slice): the softmax is shift-invariant,
        # so the exponentials are looked up, not recomputed per prediction. Rows are
        # whole h * dh vectors (each head's gate repeated dh times), which vectorise;
        # row views and local sums keep LLVM from assuming the arrays alias.
        # Prediction p masks location locs[p] of sentence rows[p].
        length = x.shape[1]
        hd = O.shape[1]
        n_heads = S.shape[1]
        dh = hd // n_heads
        z = np.empty(hd, O.dtype)
        acc = np.empty(hd, O.dtype)
        for p in range(rows.size):
            b, i = rows[p], locs[p]
            for o in range(hd):
                z[o] = 0.0
                acc[o] = 0.0
            for j in range(length):
                w = mask_id if j == i else x[b, j]
                table, value, gates = S_exp[i, j, w], V[j, w], A[p, j]
                for o in range(hd):
                    gates[o] = table[o]
                    z[o] += table[o]
                    acc[o] += table[o] * value[o]
            low = z[0]
            for o in range(hd):
                low = min(low, z[o])
            if low < 1e-30:  # every gate far below the table's best: shift by their own max
                for o in range(hd):
                    z[o] = 0.0
                    acc[o] = 0.0
                for hh in range(n_heads):
                    top = -np.inf
                    for j in range(length):
                        top = max(top, S[i, hh, j, mask_id if j == i else x[b, j]])
                    for j in range(length):
                        w = mask_id if j == i else x[b, j]
                        gate = math.exp(S[i, hh, j, w] - top)
                        for o in range(hh * dh, (hh + 1) * dh):
                            A[p, j, o] = gate
                            z[o] += gate
                            acc[o] += gate * V[j, w, o]
            out = O[p]
            for o in range(hd):
                z[o] = 1.0 / z[o]
                out[o] = acc[o] * z[o]
            for j in range(length):
                gates = A[p, j]
                for o in range(hd):
                    gates[o] *= z[o]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _layer_norm(X, gamma, beta, eps, normed, out, inv):  # pragma: no cover - compiled
        # per column p: out = gamma * (X - mean) / std + beta (out may be X); inv = 1 / std
        d, n = X.shape
        mean = np.zeros(n, X.dtype)
        for k in range(d):
            for p in range(n):
                mean[p] += X[k, p]
        for p in range(n):
            mean[p] /= d
            inv[p] = 0.0
        for k in range(d):
            for p in range(n):
                inv[p] += (X[k, p] - mean[p]) ** 2
        for p in range(n):
            inv[p] = 1.0 / math.sqrt(inv[p] / d + eps)
        for k in range(d):
            for p in range(n):
                normed[k, p] = (X[k, p] - mean[p]) * inv[p]
                out[k, p] = normed[k, p] * gamma[k] + beta[k]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _layer_norm_backward(  # pragma: no cover - compiled
        grad_out, normed, gamma, inv, g_gamma, g_beta, grad_in
    ):
        # adds to g_gamma, g_beta; writes d loss / d X to grad_in (may be grad_out)
        d, n = grad_out.shape
        s1 = np.zeros(n, grad_out.dtype)
        s2 = np.zeros(n, grad_out.dtype)
        for k in range(d):
            acc_gamma = 0.0
            acc_beta = 0.0
            for p in range(n):
                g = grad_out[k, p]
                acc_gamma += g * normed[k, p]
                acc_beta += g
                t = g * gamma[k]
                s1[p] += t
                s2[p] += t * normed[k, p]
            g_gamma[k] += acc_gamma
            g_beta[k] += acc_beta
        for p in range(n):
            s1[p] /= d
            s2[p] /= d
        for k in range(d):
            for p in range(n):
                grad_in[k, p] = inv[p] * (grad_out[k, p] * gamma[k] - s1[p] - normed[k, p] * s2[p])

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _link_forward(  # pragma: no cover - compiled
        C, R, locs, drop, g1, b1, W1, c1, W2, c2, g2, b2, bert, eps, N1, H1, U, RELU, N2, INV, HF
    ):
        # feature-major (rows, P). bert: h1 = LN(R + dropout(C)); HF = LN(h1 + dropout(FF(h1))).
        # pure: HF = dropout(C)
        d, n = C.shape
        n_ff = W1.shape[0]
        if not bert:
            for k in range(d):
                for p in range(n):
                    HF[k, p] = C[k, p] * drop[k, p]
            return
        for k in range(d):
            for p in range(n):  # the masked location's own input
                HF[k, p] = R[locs[p], k] + C[k, p] * drop[k, p]
        _layer_norm(HF, g1, b1, eps, N1, H1, INV[0])
        for f in range(n_ff):
            for p in range(n):
                U[f, p] = c1[f]
            for k in range(d):
                weight = W1[f, k]
                for p in range(n):
                    U[f, p] += weight * H1[k, p]
            for p in range(n):
                RELU[f, p] = max(U[f, p], 0.0)
        for k in range(d):
            for p in range(n):
                HF[k, p] = c2[k]
            for f in range(n_ff):
                weight = W2[k, f]
                for p in range(n):
                    HF[k, p] += weight * RELU[f, p]
            for p in range(n):
                HF[k, p] = H1[k, p] + HF[k, p] * drop[d + k, p]
        _layer_norm(HF, g2, b2, eps, N2, HF, INV[1])

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _softmax_loss(x, rows, locs, pos_w, mask_id, inv_total, GL):  # pragma: no cover
        # GL holds the logits; returns the mean weighted loss, leaves d loss / d logits
        n_out = GL.shape[1]
        total = 0.0
        for p in range(rows.size):
            i = locs[p]
            target = x[rows[p], i]
            if target == mask_id:  # a missing value: seen by the others, not predicted
                for v in range(n_out):
                    GL[p, v] = 0.0
                continue
            top = GL[p, 0]
            for v in range(1, n_out):
                top = max(top, GL[p, v])
            target_logit = GL[p, target]
            z = 0.0
            for v in range(n_out):
                e = GL[p, v] - top
                GL[p, v] = math.exp(e) if e > -60.0 else 0.0
                z += GL[p, v]
            total += pos_w[i] * (math.log(z) + top - target_logit)
            scale = pos_w[i] * inv_total
            for v in range(n_out):
                GL[p, v] *= scale / z
            GL[p, target] -= scale
        return total * inv_total

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _link_backward(  # pragma: no cover - compiled
        G, locs, drop, g1, W1, W2, g2, bert, N1, U, N2, INV, gR, gg1, gb1, gg2, gb2, GC, GF, GU
    ):
        # feature-major: d loss / d HF (G, overwritten) back through the link to d loss / d C (GC)
        d, n = G.shape
        length = gR.shape[0]
        n_ff = W1.shape[0]
        if not bert:
            for k in range(d):
                for p in range(n):
                    GC[k, p] = G[k, p] * drop[k, p]
            return
        _layer_norm_backward(G, N2, g2, INV[1], gg2, gb2, G)  # G: d loss / d h1 (residual path)
        for k in range(d):
            for p in range(n):
                GF[k, p] = G[k, p] * drop[d + k, p]
        for f in range(n_ff):  # feed-forward
            for p in range(n):
                GU[f, p] = 0.0
            for k in range(d):
                weight = W2[k, f]
                for p in range(n):
                    GU[f, p] += GF[k, p] * weight
            for p in range(n):
                if U[f, p] <= 0.0:
                    GU[f, p] = 0.0
            for k in range(d):
                weight = W1[f, k]
                for p in range(n):
                    G[k, p] += GU[f, p] * weight
        _layer_norm_backward(G, N1, g1, INV[0], gg1, gb1, GC)
        acc = np.empty(length)  # per location, summed in float64 before the table
        for k in range(d):
            acc[:] = 0.0
            for p in range(n):
                acc[locs[p]] += GC[k, p]
                GC[k, p] *= drop[k, p]
            for i in range(length):
                gR[i, k] += acc[i]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mix_backward(x, rows, locs, mask_id, V, A, GO, gS, gV):  # pragma: no cover - compiled
        # d loss / d o (GO) back to the expert table and the gate scores
        length = x.shape[1]
        hd = GO.shape[1]
        n_heads = gS.shape[1]
        dh = hd // n_heads
        prod = np.empty(hd, GO.dtype)
        g_gate = np.empty((length, n_heads), GO.dtype)
        dot = np.empty(n_heads, GO.dtype)
        # consecutive predictions of one sentence share the experts of its words: sum
        # their gradients here, then add to the table once per sentence
        g_row = np.zeros((length, hd), GO.dtype)
        n_pred = rows.size
        for p in range(n_pred):
            b, i = rows[p], locs[p]
            grad = GO[p]
            for hh in range(n_heads):
                dot[hh] = 0.0
            for j in range(length):
                w = mask_id if j == i else x[b, j]
                target = gV[j, w] if j == i else g_row[j]
                value, gates = V[j, w], A[p, j]
                for o in range(hd):
                    prod[o] = grad[o] * value[o]
                    target[o] += gates[o] * grad[o]
                for hh in range(n_heads):
                    acc = prod[hh * dh]
                    for e in range(1, dh):
                        acc += prod[hh * dh + e]
                    g_gate[j, hh] = acc
                    dot[hh] += gates[hh * dh] * acc
            for j in range(length):
                w = mask_id if j == i else x[b, j]
                gates = A[p, j]
                for hh in range(n_heads):
                    gS[i, hh, j, w] += gates[hh * dh] * (g_gate[j, hh] - dot[hh])
            if p + 1 == n_pred or rows[p + 1] != b:  # the sentence's last prediction
                for j in range(length):
                    target, row = gV[j, x[b, j]], g_row[j]
                    for o in range(hd):
                        target[o] += row[o]
                        row[o] = 0.0

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _tables_forward(W, mask_id, scale, T):  # pragma: no cover - compiled
        # the expert form's tables: every (location, word) input, its key and value,
        # the mask's query at every location, and all gate scores
        E, P, Wq, bq, Wk, bk, Wv, bv = W[0], W[1], W[2], W[3], W[4], W[5], W[6], W[7]
        inputs, residual, queries, keys, values, scores, scores_exp, used = T
        length, n_words, d = inputs.shape
        hd = values.shape[2]
        n_heads = scores.shape[1]
        dh = hd // n_heads
        for j in range(length):
            for w in range(n_words):
                for k in range(d):
                    inputs[j, w, k] = E[w, k] + P[j, k]
        flat_inputs = inputs.reshape((length * n_words, d))
        flat_keys = keys.reshape((length * n_words, hd))
        flat_values = values.reshape((length * n_words, hd))
        np.dot(flat_inputs, Wk.T, flat_keys)  # (L W, d) @ (d, h dh)
        np.dot(flat_inputs, Wv.T, flat_values)
        _add_rows(flat_keys, bk)
        _add_rows(flat_values, bv)
        for i in range(length):
            for k in range(d):
                residual[i, k] = inputs[i, mask_id, k]
            for o in range(hd):
                acc = bq[o]
                for k in range(d):
                    acc += Wq[o, k] * residual[i, k]
                queries[i, o] = acc * scale
        # gate scores and their exponentials, for the pairs the batch reads only; in
        # the tables' precision (float32 exp costs half of float64's)
        zero, lowest = scores.dtype.type(0.0), scores.dtype.type(-np.inf)
        for i in range(length):
            for hh in range(n_heads):
                top = lowest
                for j in range(length):
                    for w in range(n_words):
                        if used[j, w]:
                            acc = zero
                            for e in range(dh):
                                acc += queries[i, hh * dh + e] * keys[j, w, hh * dh + e]
                            scores[i, hh, j, w] = acc
                            top = max(top, acc)
                for j in range(length):
                    for w in range(n_words):
                        if used[j, w]:
                            gate = math.exp(scores[i, hh, j, w] - top)
                            for e in range(dh):
                                scores_exp[i, j, w, hh * dh + e] = gate

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _tables_backward(g_tables, W, mask_id, scale, T, G):  # pragma: no cover - compiled
        # chain rule from the tables back to embeddings and projections (overwrites G)
        g_scores, g_values, g_residual = g_tables
        Wq, Wk, Wv = W[2], W[4], W[6]
        inputs, residual, queries, keys, used = T[0], T[1], T[2], T[3], T[7]
        gE, gP, gWq, gbq, gWk, gbk, gWv, gbv = G
        length, n_words, d = inputs.shape
        hd = g_values.shape[2]
        n_heads = g_scores.shape[1]
        dh = hd // n_heads
        n_pairs = length * n_words
        # d score[i, h, j, w] / d key[j, w, h, e] = query[i, h, e]
        g_key = np.zeros((length, n_words, hd), inputs.dtype)
        g_query = np.zeros((length, hd), inputs.dtype)
        for i in range(length):
            for hh in range(n_heads):
                for j in range(length):
                    for w in range(n_words):
                        if not used[j, w]:  # no gradient: the batch did not read it
                            continue
                        gs = g_scores[i, hh, j, w]
                        for e in range(dh):
                            o = hh * dh + e
                            g_key[j, w, o] += gs * queries[i, o]
                            g_query[i, o] += gs * keys[j, w, o]
        for i in range(length):
            for o in range(hd):
                g_query[i, o] *= scale
        flat_inputs = inputs.reshape((n_pairs, d))
        flat_g_key = g_key.reshape((n_pairs, hd))
        flat_g_values = g_values.reshape((n_pairs, hd))
        np.dot(flat_g_key.T, flat_inputs, gWk)  # (h dh, L W) @ (L W, d)
        np.dot(flat_g_values.T, flat_inputs, gWv)
        np.dot(g_query.T, residual, gWq)  # the query reads the mask's input
        _column_sums(flat_g_key, gbk)
        _column_sums(flat_g_values, gbv)
        _column_sums(g_query, gbq)
        g_in = np.dot(flat_g_key, Wk) + np.dot(flat_g_values, Wv)  # (L W, d)
        g_mask = np.dot(g_query, Wq)  # (L, d)
        gE[:] = 0.0
        gP[:] = 0.0
        for j in range(length):
            for w in range(n_words):
                row = j * n_words + w
                for k in range(d):
                    g = g_in[row, k]
                    if w == mask_id:
                        g += g_mask[j, k] + g_residual[j, k]
                    gE[w, k] += g
                    gP[j, k] += g

    @numba.njit(cache=True, nogil=True)
    def _mark_used(x, mask_id, used):  # pragma: no cover - compiled
        # the (location, word) pairs whose gate scores and experts the batch reads
        used[:] = False
        for j in range(x.shape[1]):
            used[j, mask_id] = True
            for r in range(x.shape[0]):
                used[j, x[r, j]] = True

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _add_rows(M, bias):  # pragma: no cover - compiled
        for r in range(M.shape[0]):
            for c in range(M.shape[1]):
                M[r, c] += bias[c]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _column_sums(M, out):  # pragma: no cover - compiled
        out[:] = 0.0
        for r in range(M.shape[0]):
            for c in range(M.shape[1]):
                out[c] += M[r, c]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _rows_of(flat, rows, n):  # pragma: no cover - compiled
        return flat[: rows * n].reshape((rows, n))

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _add_columns(M, bias):  # pragma: no cover - compiled
        for r in range(M.shape[0]):
            for c in range(M.shape[1]):
                M[r, c] += bias[r]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _row_sums(M, out):  # pragma: no cover - compiled
        for r in range(M.shape[0]):
            acc = 0.0
            for c in range(M.shape[1]):
                acc += M[r, c]
            out[r] = acc

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _rows_step(  # pragma: no cover - compiled
        x, rows, locs, W, G, T, R, columns, g_tables, pos_w, mask_id, inv_total, bert, eps
    ):
        # forward and backward of the predictions (sentence rows[p] of x, location
        # locs[p] masked), given the tables: writes the per-prediction weights'
        # gradients G (in _ROW_GRADIENTS order) and the tables'; returns the loss share
        Wo, bo, Wout, bout = W[8], W[9], W[10], W[11]
        g1, b1, W1, c1, W2, c2, g2, b2 = W[12], W[13], W[14], W[15], W[16], W[17], W[18], W[19]
        gWo, gbo, gWout, gbout, gg1, gb1, gW1, gc1, gW2, gc2, gg2, gb2 = G
        residual, values, scores, scores_exp = T[1], T[4], T[5], T[6]
        g_scores, g_values, g_residual = g_tables
        n = rows.size  # predictions
        d, n_ff = Wo.shape[0], W1.shape[0]
        A, O, GL, GO = R[0][:n], R[1][:n], R[2][:n], R[3][:n]
        C, N1 = _rows_of(columns[0], d, n), _rows_of(columns[1], d, n)
        H1, U = _rows_of(columns[2], d, n), _rows_of(columns[3], n_ff, n)
        RELU, N2 = _rows_of(columns[4], n_ff, n), _rows_of(columns[5], d, n)
        INV, HF = _rows_of(columns[6], 2, n), _rows_of(columns[7], d, n)
        GH, GF = _rows_of(columns[8], d, n), _rows_of(columns[9], d, n)
        GU, GC = _rows_of(columns[10], n_ff, n), _rows_of(columns[11], d, n)
        drop = _rows_of(columns[12], 2 * d, n)
        g_scores[:] = 0.0
        g_values[:] = 0.0
        g_residual[:] = 0.0
        for a in (gg1, gb1, gg2, gb2):
            a[:] = 0.0
        # forward: mixture (per prediction), W_O, link (per feature), output layer, loss
        _mix_forward(x, rows, locs, mask_id, scores, scores_exp, values, A, O)
        np.dot(Wo, O.T, C)  # (d, h dh) @ (h dh, P)
        _add_columns(C, bo)
        _link_forward(
            C, residual, locs, drop, g1, b1, W1, c1, W2, c2, g2, b2, bert, eps, N1, H1, U, RELU,
            N2, INV, HF,
        )  # fmt: skip
        np.dot(HF.T, Wout.T, GL)  # (P, d) @ (d, V)
        _add_rows(GL, bout)
        loss = _softmax_loss(x, rows, locs, pos_w, mask_id, inv_total, GL)
        # backward: the same path in reverse; weight gradients are GEMMs over predictions
        np.dot(Wout.T, GL.T, GH)  # (d, V) @ (V, P)
        np.dot(GL.T, HF.T, gWout)
        _column_sums(GL, gbout)
        _link_backward(
            GH, locs, drop, g1, W1, W2, g2, bert, N1, U, N2, INV, g_residual, gg1, gb1, gg2, gb2,
            GC, GF, GU,
        )  # fmt: skip
        if bert:
            np.dot(GU, H1.T, gW1)  # (d_ff, P) @ (P, d)
            _row_sums(GU, gc1)
            np.dot(GF, RELU.T, gW2)
            _row_sums(GF, gc2)
        np.dot(GC.T, Wo, GO)  # (P, d) @ (d, h dh)
        np.dot(GC, O, gWo)
        _row_sums(GC, gbo)
        _mix_backward(x, rows, locs, mask_id, values, A, GO, g_scores, g_values)
        return loss

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _adam_update(groups, hyper):  # pragma: no cover - compiled
        # torch.optim.Adam's update (L2 weight decay added to the gradient); with eps_hat,
        # eps is added to the uncorrected sqrt(v) as in Keras: eps / root_bias2 here
        lr, beta1, beta2, eps, decay, step, eps_hat = hyper
        step_size = lr / (1.0 - beta1**step)
        root_bias2 = math.sqrt(1.0 - beta2**step)
        if eps_hat > 0.0:
            eps = eps / root_bias2
        for group in literal_unroll(groups):
            weight, grad, first, second = group
            w, g, m, v = weight.reshape(-1), grad.reshape(-1), first.reshape(-1), second.reshape(-1)
            for k in range(w.size):
                gk = g[k] + decay * w[k]
                m[k] = beta1 * m[k] + (1.0 - beta1) * gk
                v[k] = beta2 * v[k] + (1.0 - beta2) * gk * gk
                w[k] -= step_size * m[k] / (math.sqrt(v[k]) / root_bias2 + eps)

    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def _train_epoch(  # pragma: no cover - compiled
        tokens, order, per_step, copies, stride, W, G, groups, T, R, columns, g_tables, pos_w,
        mask_id, bert, eps, scale, state, threshold, keep, hyper, losses,
    ):  # fmt: skip
        # every step of one pass: batch gather, dropout, tables, rows, tables'
        # gradients, Adam. Rows: order permutes sentences, a step takes per_step of
        # them and predicts every location. Copies: order permutes (sentence,
        # location) pairs as sentence * L + location, a step takes per_step pairs.
        # An item's input is row order[.] // stride of tokens (stride L: sentences,
        # 1: every copy written out).
        # Returns (steps applied, 0 | 1 non-finite loss | 2 nothing to predict)
        length = tokens.shape[1]
        max_pred = per_step if copies else per_step * length
        batch = np.empty((per_step, length), tokens.dtype)
        rows = np.empty(max_pred, np.int64)
        locs = np.empty(max_pred, np.int64)
        if not copies:
            for p in range(max_pred):
                rows[p] = p // length
                locs[p] = p % length
        row_grads = G[8:]
        table_grads = G[:8]
        step_hyper = hyper.copy()
        steps = 0
        for first in range(0, order.size, per_step):
            n = min(per_step, order.size - first)
            x = batch[:n]
            n_pred = n if copies else n * length
            for r in range(n):
                source = order[first + r] // stride
                for j in range(length):
                    x[r, j] = tokens[source, j]
                if copies:
                    rows[r] = r
                    locs[r] = order[first + r] % length
            total = 0.0
            for p in range(n_pred):
                if x[rows[p], locs[p]] != mask_id:
                    total += pos_w[locs[p]]
            if total <= 0.0:
                return steps, 2
            _mark_used(x, mask_id, T[7])
            if threshold > 0:
                _dropout_masks(state, columns[12][: 2 * W[8].shape[0] * n_pred], threshold, keep)
            _tables_forward(W, mask_id, scale, T)
            loss = _rows_step(
                x, rows[:n_pred], locs[:n_pred], W, row_grads, T, R, columns, g_tables, pos_w,
                mask_id, 1.0 / total, bert, eps,
            )  # fmt: skip
            losses[steps] = loss
            if not math.isfinite(loss):
                return steps, 1
            _tables_backward(g_tables, W, mask_id, scale, T, table_grads)
            step_hyper[5] = hyper[5] + steps + 1
            _adam_update(groups, step_hyper)
            steps += 1
        return steps, 0
