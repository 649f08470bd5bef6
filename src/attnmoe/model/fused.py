"""A fused CPU path for all-locations MLM training of small one-layer models.

The reference math is :mod:`attnmoe.model.attention` with
:func:`~attnmoe.model.functional.mix_experts_one_pass`; this module computes the
same loss and every gradient (tests hold them equal to 1e-10 in float64) but
reads the model in its continuous-word-experts form. Per step it builds, once,
the gate score table ``S[i, h, j, w]`` (masked location ``i``, head ``h``, expert
location ``j`` holding word ``w``) and the expert table ``V[j, w, h, :]``; then
compiled loops (numba) gather from them per prediction, mix, run the bert link
and the output softmax, and go back the same way, with the few dense products
(``W_O``, the output layer, weight gradients) as BLAS calls over all rows.
Gradients of the tables are chained back to the embeddings and projections by
hand, also once per step.

Why: tabular models are tiny (L = 6 locations, d = 20). torch then spends its
time dispatching a hundred small operators per step (a 6 x 6 batched matmul per
head and row costs more than its arithmetic), and autograd's bookkeeping
dominates. Here a step is about a dozen calls, with no allocation.

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


# Weights whose gradients are GEMMs over per-prediction rows (one partial per thread).
_ROW_GRADIENTS = ("Wout", "bout", "Wo", "bo", "W1", "c1", "W2", "c2", "g1", "b1", "g2", "b2")
_NORMS = ("g1", "b1", "g2", "b2")  # LayerNorm scales and shifts, summed in the kernel


class _Workspace:
    """One thread's share of a batch: per-prediction rows and partial gradients."""

    def __init__(self, fused: FusedMLM, max_rows: int) -> None:
        cfg, z = fused.model.config, fused.np_dtype
        length, d, h, dh = fused.length, cfg.d_model, cfg.n_heads, cfg.d_head
        n_words, n_ff = cfg.vocab_size + 1, cfg.d_ff if fused.bert else 1
        n_pred = max_rows * length
        shapes = {  # per-prediction rows (P = sentences x locations)
            "A": (n_pred, h, length),  # gates
            "O": (n_pred, h * dh),  # mixture, the input of W_O
            "C": (n_pred, d),  # W_O output
            "N1": (n_pred, d),  # normalised, LayerNorm 1
            "H1": (n_pred, d),  # feed-forward input
            "U": (n_pred, n_ff),  # feed-forward pre-activation
            "RELU": (n_pred, n_ff),
            "N2": (n_pred, d),  # normalised, LayerNorm 2
            "INV": (n_pred, 2),  # 1 / std of both LayerNorms
            "HF": (n_pred, d),  # output-layer input
            "GL": (n_pred, cfg.vocab_size),  # logits, then d loss / d logits
            "G": (n_pred, d),  # d loss / d HF
            "GF": (n_pred, d),  # d loss / d feed-forward output
            "GU": (n_pred, n_ff),  # d loss / d feed-forward pre-activation
            "GC": (n_pred, d),  # d loss / d W_O output
            "GO": (n_pred, h * dh),  # d loss / d mixture
        }
        self.rows = {k: torch.zeros(shape, dtype=fused.dtype) for k, shape in shapes.items()}
        self.g_scores = np.zeros((length, h, length, n_words), z)
        self.g_values = np.zeros((length, n_words, h, dh), z)
        self.g_residual = np.zeros((length, d), z)
        self.grads = {
            k: torch.zeros(fused.params[k].shape, dtype=fused.dtype) for k in _ROW_GRADIENTS
        }

    def run(self, fused: FusedMLM, tokens: np.ndarray, drop: np.ndarray, inv_total: float) -> float:
        """Forward and backward of ``tokens`` (a slice of the batch); returns its loss share."""
        cfg, p, w = fused.model.config, fused.params, fused.weights_t
        n_pred = tokens.size
        t = {k: v[:n_pred] for k, v in self.rows.items()}
        r = {k: v.numpy() for k, v in t.items()}
        g = {k: v.numpy() for k, v in self.grads.items()}
        for a in (self.g_scores, self.g_values, self.g_residual, *(g[k] for k in _NORMS)):
            a.fill(0.0)
        # forward: mixture, W_O (BLAS), link, output layer (BLAS), loss
        _mix_forward(
            tokens, cfg.mask_id, fused.scores, fused.scores_exp, fused.values, r["A"], r["O"]
        )
        torch.addmm(w["bo"], t["O"], w["Wo"].T, out=t["C"])
        _link_forward(
            r["C"], fused.residual, drop, p["g1"], p["b1"], p["W1"], p["c1"], p["W2"], p["c2"],
            p["g2"], p["b2"], fused.bert, fused.eps, r["N1"], r["H1"], r["U"], r["RELU"],
            r["N2"], r["INV"], r["HF"],
        )  # fmt: skip
        torch.addmm(w["bout"], t["HF"], w["Wout"].T, out=t["GL"])
        loss = _softmax_loss(tokens, fused.position_weights, cfg.mask_id, inv_total, r["GL"])
        # backward: the same path in reverse; weight gradients are GEMMs over rows
        grad = self.grads
        torch.mm(t["GL"], w["Wout"], out=t["G"])
        torch.mm(t["GL"].T, t["HF"], out=grad["Wout"])
        torch.sum(t["GL"], 0, out=grad["bout"])
        _link_backward(
            r["G"], drop, p["g1"], p["W1"], p["W2"], p["g2"], fused.bert, r["N1"], r["U"],
            r["N2"], r["INV"], self.g_residual, g["g1"], g["b1"], g["g2"], g["b2"], r["GC"],
            r["GF"], r["GU"],
        )  # fmt: skip
        if fused.bert:
            torch.mm(t["GU"].T, t["H1"], out=grad["W1"])
            torch.sum(t["GU"], 0, out=grad["c1"])
            torch.mm(t["GF"].T, t["RELU"], out=grad["W2"])
            torch.sum(t["GF"], 0, out=grad["c2"])
        torch.mm(t["GC"], w["Wo"], out=t["GO"])
        torch.mm(t["GC"].T, t["O"], out=grad["Wo"])
        torch.sum(t["GC"], 0, out=grad["bo"])
        _mix_backward(
            tokens, cfg.mask_id, fused.values, r["A"], r["GO"], self.g_scores, self.g_values
        )
        return loss


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
        self.values = np.zeros((length, n_words, h, dh), z)
        self.scores = np.zeros((length, h, length, n_words), z)
        self.scores_exp = np.zeros((length, h, length, n_words), z)
        per_thread = -(-max_rows // self.threads)
        self.workspaces = [_Workspace(self, per_thread) for _ in range(self.threads)]
        self.drop = np.ones((max_rows * length, 2, d), z)

    def step(self, x: Tensor) -> float:
        """Set every parameter's ``.grad`` to the gradient of the batch's mean
        weighted loss (each location of ``x`` masked alone); return the loss."""
        cfg, p, g = self.model.config, self.params, self.grads
        n, length = x.shape
        if length != self.length or n > self.max_rows:
            raise ValueError(f"batch {tuple(x.shape)} exceeds ({self.max_rows}, {self.length})")
        tokens = x.contiguous().numpy()
        total = float(((tokens != cfg.mask_id) * self.position_weights).sum())
        if total <= 0:
            raise ValueError("nothing to predict: every location holds the mask token")
        drop = self.drop[: n * length]
        if self.model.training and cfg.dropout > 0:
            if self.dropout is None:
                raise ValueError("a model training with dropout needs a DropoutStream")
            self.dropout.fill(drop, cfg.dropout)
        elif drop.size and drop[0, 0, 0] != 1:
            self.drop.fill(1.0)
        _tables_forward(
            p["E"], p["P"], p["Wq"], p["bq"], p["Wk"], p["bk"], p["Wv"], p["bv"], cfg.mask_id,
            self.scale, self.inputs, self.queries, self.keys, self.values, self.scores,
            self.scores_exp,
        )  # fmt: skip
        np.copyto(self.residual, self.inputs[:, cfg.mask_id, :])

        # each thread takes a contiguous slice of sentences (and their dropout masks)
        bounds = [n * k // self.threads for k in range(self.threads + 1)]
        jobs = [
            (ws, tokens[lo:hi], drop[lo * length : hi * length])
            for ws, lo, hi in zip(self.workspaces, bounds, bounds[1:], strict=False)
            if hi > lo
        ]
        if len(jobs) == 1:
            losses = [jobs[0][0].run(self, jobs[0][1], jobs[0][2], 1.0 / total)]
        else:
            pool = _thread_pool(self.threads)
            futures = [pool.submit(ws.run, self, t, dr, 1.0 / total) for ws, t, dr in jobs]
            losses = [f.result() for f in futures]
        spaces = [job[0] for job in jobs]

        g_scores = sum(ws.g_scores for ws in spaces[1:]) + spaces[0].g_scores
        g_values = sum(ws.g_values for ws in spaces[1:]) + spaces[0].g_values
        g_residual = sum(ws.g_residual for ws in spaces[1:]) + spaces[0].g_residual
        _tables_backward(
            g_scores, g_values, g_residual, p["Wq"], p["Wk"], p["Wv"], cfg.mask_id, self.scale,
            self.inputs, self.queries, self.keys, g["E"], g["P"], g["Wq"], g["bq"], g["Wk"],
            g["bk"], g["Wv"], g["bv"],
        )  # fmt: skip
        for name in _ROW_GRADIENTS:
            if name in self.named:
                grad = self.named[name].grad
                grad.copy_(spaces[0].grads[name])
                for ws in spaces[1:]:
                    grad.add_(ws.grads[name])
        return float(sum(losses))


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
    def _mix_forward(x, mask_id, S, S_exp, Vt, A, O):  # pragma: no cover - compiled
        # gates pi[h, j] = softmax_j S[i, h, j, x_j] (x_i the mask) and o_h = sum_j pi V[j, x_j, h].
        # S_exp = exp(S - max over the (i, h) table slice): the softmax is shift-invariant,
        # so the exponentials are looked up, not recomputed per prediction.
        n, length = x.shape
        n_heads, dh = Vt.shape[2], Vt.shape[3]
        wj = np.empty(length, np.int64)
        for b in range(n):
            for i in range(length):
                p = b * length + i
                for j in range(length):
                    wj[j] = mask_id if j == i else x[b, j]
                for hh in range(n_heads):
                    z = 0.0
                    for j in range(length):
                        A[p, hh, j] = S_exp[i, hh, j, wj[j]]
                        z += A[p, hh, j]
                    if z < 1e-30:  # every gate far below the table's best: shift by their own max
                        top = S[i, hh, 0, wj[0]]
                        for j in range(1, length):
                            top = max(top, S[i, hh, j, wj[j]])
                        z = 0.0
                        for j in range(length):
                            A[p, hh, j] = math.exp(S[i, hh, j, wj[j]] - top)
                            z += A[p, hh, j]
                    inv = 1.0 / z
                    for j in range(length):
                        A[p, hh, j] *= inv
                    for e in range(dh):
                        acc = 0.0
                        for j in range(length):
                            acc += A[p, hh, j] * Vt[j, wj[j], hh, e]
                        O[p, hh * dh + e] = acc

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _layer_norm(z, gamma, beta, eps, normed, out):  # pragma: no cover - compiled
        # out = gamma * (z - mean) / std + beta (out may be z); returns 1 / std
        d = z.shape[0]
        mean = 0.0
        for k in range(d):
            mean += z[k]
        mean /= d
        var = 0.0
        for k in range(d):
            var += (z[k] - mean) ** 2
        inv = 1.0 / math.sqrt(var / d + eps)
        for k in range(d):
            normed[k] = (z[k] - mean) * inv
            out[k] = normed[k] * gamma[k] + beta[k]
        return inv

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy", inline="always")
    def _layer_norm_backward(  # pragma: no cover - compiled
        grad_out, normed, gamma, inv, g_gamma, g_beta, grad_in
    ):
        # adds to g_gamma, g_beta; writes d loss / d z to grad_in (not grad_out)
        d = grad_out.shape[0]
        s1 = 0.0
        s2 = 0.0
        for k in range(d):
            g_gamma[k] += grad_out[k] * normed[k]
            g_beta[k] += grad_out[k]
            t = grad_out[k] * gamma[k]
            s1 += t
            s2 += t * normed[k]
        s1 /= d
        s2 /= d
        for k in range(d):
            grad_in[k] = inv * (grad_out[k] * gamma[k] - s1 - normed[k] * s2)

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _link_forward(  # pragma: no cover - compiled
        C, R, drop, g1, b1, W1, c1, W2, c2, g2, b2, bert, eps, N1, H1, U, RELU, N2, INV, HF
    ):
        # bert: h1 = LN(R + dropout(C)); HF = LN(h1 + dropout(FF(h1))). pure: HF = dropout(C)
        n_pred, d = C.shape
        length = R.shape[0]
        n_ff = W1.shape[0]
        for p in range(n_pred):
            if not bert:
                for k in range(d):
                    HF[p, k] = C[p, k] * drop[p, 0, k]
                continue
            i = p % length
            for k in range(d):
                HF[p, k] = R[i, k] + C[p, k] * drop[p, 0, k]
            INV[p, 0] = _layer_norm(HF[p], g1, b1, eps, N1[p], H1[p])
            for f in range(n_ff):
                acc = c1[f]
                for k in range(d):
                    acc += W1[f, k] * H1[p, k]
                U[p, f] = acc
                RELU[p, f] = max(acc, 0.0)
            for k in range(d):
                acc = c2[k]
                for f in range(n_ff):
                    acc += W2[k, f] * RELU[p, f]
                HF[p, k] = H1[p, k] + acc * drop[p, 1, k]
            INV[p, 1] = _layer_norm(HF[p], g2, b2, eps, N2[p], HF[p])

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _softmax_loss(x, pos_w, mask_id, inv_total, GL):  # pragma: no cover - compiled
        # GL holds the logits; returns the mean weighted loss, leaves d loss / d logits
        n, length = x.shape
        n_out = GL.shape[1]
        total = 0.0
        for b in range(n):
            for i in range(length):
                p = b * length + i
                target = x[b, i]
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
        G, drop, g1, W1, W2, g2, bert, N1, U, N2, INV, gR, gg1, gb1, gg2, gb2, GC, GF, GU
    ):
        # d loss / d HF (G) back through the link to d loss / d C (GC)
        n_pred, d = G.shape
        length = gR.shape[0]
        n_ff = W1.shape[0]
        g = np.empty(d, G.dtype)
        g_h1 = np.empty(d, G.dtype)
        for p in range(n_pred):
            if not bert:
                for k in range(d):
                    GC[p, k] = G[p, k] * drop[p, 0, k]
                continue
            _layer_norm_backward(G[p], N2[p], g2, INV[p, 1], gg2, gb2, g)
            for k in range(d):
                g_h1[k] = g[k]  # residual path
                GF[p, k] = g[k] * drop[p, 1, k]
            # feed-forward
            for f in range(n_ff):
                acc = 0.0
                for k in range(d):
                    acc += GF[p, k] * W2[k, f]
                GU[p, f] = acc if U[p, f] > 0.0 else 0.0
                for k in range(d):
                    g_h1[k] += GU[p, f] * W1[f, k]
            _layer_norm_backward(g_h1, N1[p], g1, INV[p, 0], gg1, gb1, g)
            i = p % length
            for k in range(d):
                gR[i, k] += g[k]
                GC[p, k] = g[k] * drop[p, 0, k]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _mix_backward(x, mask_id, Vt, A, GO, gS, gVt):  # pragma: no cover - compiled
        # d loss / d o (GO) back to the expert table and the gate scores
        n, length = x.shape
        n_heads, dh = Vt.shape[2], Vt.shape[3]
        wj = np.empty(length, np.int64)
        g_a = np.empty(length)
        # a sentence's L predictions share the experts of its words: sum their
        # gradients here, then add to the table once (not L times)
        g_row = np.empty((length, n_heads, dh))
        for b in range(n):
            g_row[:] = 0.0
            for i in range(length):
                p = b * length + i
                for j in range(length):
                    wj[j] = mask_id if j == i else x[b, j]
                for hh in range(n_heads):
                    dot = 0.0
                    for j in range(length):
                        acc = 0.0
                        w = wj[j]
                        gate = A[p, hh, j]
                        for e in range(dh):
                            go = GO[p, hh * dh + e]
                            acc += go * Vt[j, w, hh, e]
                            if j == i:
                                gVt[j, w, hh, e] += gate * go
                            else:
                                g_row[j, hh, e] += gate * go
                        g_a[j] = acc
                        dot += gate * acc
                    for j in range(length):
                        gS[i, hh, j, wj[j]] += A[p, hh, j] * (g_a[j] - dot)
            for j in range(length):
                w = x[b, j]
                for hh in range(n_heads):
                    for e in range(dh):
                        gVt[j, w, hh, e] += g_row[j, hh, e]

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _tables_forward(  # pragma: no cover - compiled
        E, P, Wq, bq, Wk, bk, Wv, bv, mask_id, scale, inputs, queries, keys, values, scores,
        scores_exp,
    ):  # fmt: skip
        # the expert form's tables: every (location, word) input, its key and value,
        # the mask's query at every location, and all gate scores
        length, n_words, d = inputs.shape
        n_heads, dh = values.shape[2], values.shape[3]
        for j in range(length):
            for w in range(n_words):
                for k in range(d):
                    inputs[j, w, k] = E[w, k] + P[j, k]
                for o in range(n_heads * dh):
                    acc_k = bk[o]
                    acc_v = bv[o]
                    for k in range(d):
                        acc_k += Wk[o, k] * inputs[j, w, k]
                        acc_v += Wv[o, k] * inputs[j, w, k]
                    keys[j, w, o] = acc_k
                    values[j, w, o // dh, o % dh] = acc_v
        for i in range(length):
            for o in range(n_heads * dh):
                acc = bq[o]
                for k in range(d):
                    acc += Wq[o, k] * inputs[i, mask_id, k]
                queries[i, o] = acc * scale
        for i in range(length):
            for hh in range(n_heads):
                for j in range(length):
                    for w in range(n_words):
                        acc = 0.0
                        for e in range(dh):
                            acc += queries[i, hh * dh + e] * keys[j, w, hh * dh + e]
                        scores[i, hh, j, w] = acc
                top = scores[i, hh, 0, 0]
                for j in range(length):
                    for w in range(n_words):
                        top = max(top, scores[i, hh, j, w])
                for j in range(length):
                    for w in range(n_words):
                        scores_exp[i, hh, j, w] = math.exp(scores[i, hh, j, w] - top)

    @numba.njit(cache=True, fastmath=_FAST, nogil=True, error_model="numpy")
    def _tables_backward(  # pragma: no cover - compiled
        g_scores, g_values, g_residual, Wq, Wk, Wv, mask_id, scale, inputs, queries, keys,
        gE, gP, gWq, gbq, gWk, gbk, gWv, gbv,
    ):  # fmt: skip
        # chain rule from the tables back to embeddings and projections (overwrites)
        length, n_words, d = inputs.shape
        n_heads, dh = g_values.shape[2], g_values.shape[3]
        hd = n_heads * dh
        g_in = np.zeros((length, n_words, d))
        gE[:] = 0.0
        gP[:] = 0.0
        gWq[:] = 0.0
        gbq[:] = 0.0
        gWk[:] = 0.0
        gbk[:] = 0.0
        gWv[:] = 0.0
        gbv[:] = 0.0
        g_key = np.zeros(hd)
        g_query = np.zeros(hd)
        for j in range(length):
            for w in range(n_words):
                # d score[i, h, j, w] / d key[j, w, h, e] = query[i, h, e]
                for hh in range(n_heads):
                    for e in range(dh):
                        acc = 0.0
                        for i in range(length):
                            acc += g_scores[i, hh, j, w] * queries[i, hh * dh + e]
                        g_key[hh * dh + e] = acc
                for o in range(hd):
                    gv = g_values[j, w, o // dh, o % dh]
                    gbk[o] += g_key[o]
                    gbv[o] += gv
                    for k in range(d):
                        gWk[o, k] += g_key[o] * inputs[j, w, k]
                        gWv[o, k] += gv * inputs[j, w, k]
                        g_in[j, w, k] += g_key[o] * Wk[o, k] + gv * Wv[o, k]
        for i in range(length):
            for hh in range(n_heads):
                for e in range(dh):
                    acc = 0.0
                    for j in range(length):
                        for w in range(n_words):
                            acc += g_scores[i, hh, j, w] * keys[j, w, hh * dh + e]
                    g_query[hh * dh + e] = acc * scale
            for o in range(hd):
                gbq[o] += g_query[o]
                for k in range(d):
                    gWq[o, k] += g_query[o] * inputs[i, mask_id, k]
                    g_in[i, mask_id, k] += g_query[o] * Wq[o, k]
            for k in range(d):
                g_in[i, mask_id, k] += g_residual[i, k]
        for j in range(length):
            for w in range(n_words):
                for k in range(d):
                    gE[w, k] += g_in[j, w, k]
                    gP[j, k] += g_in[j, w, k]
