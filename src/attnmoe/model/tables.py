"""One-layer models answered from precomputed experts-form tables (NumPy, float64).

A one-layer model predicts a masked location ``i`` in one mixture of experts
(``docs/math.md``): the query is fixed (the mask token at ``i``), so each head's
gate score of location ``j`` holding word ``w`` is a number looked up in a table,
and so is the expert ``alpha_j(w)``. For a row this gives the gates, the context
vector, the logits and each expert's share of a class's logit with a few lookups
and small dot products: the numbers of ``masked_logits`` (to float64 rounding,
fractional codes included: every table is affine in the word's input, so a code
between two words mixes their table rows) and of
:func:`~attnmoe.explain.explain` (pure form: the exact shares; bert form: the
integrated gradients through the link, ``explain``'s midpoint rule).

:class:`ExpertTables` holds the tables of every ensemble member. Its
:meth:`~ExpertTables.probabilities` runs one compiled loop over the rows (numba;
NumPy broadcasting where numba is missing); each row is computed alone, so a
row's probabilities do not depend on the rows beside it. :meth:`ExpertTables.of`
returns None for the models this does not cover (more than one layer, sparse or
windowed gating, weights other than float64 on the CPU, training mode), which
keep the torch path.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from scipy.special import erf

from .attention import BidirectionalAttention
from .base import MaskedWordModel
from .experts import ContinuousWordExperts
from .functional import check_codes

try:  # numba is a dependency, but a broken install must not break the package
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    HAVE_NUMBA = False

#: midpoints of the integrated gradients (``explain``'s default ``n_steps``)
N_STEPS = 32

#: rows per NumPy pass of the fallback (bounds its (rows, H, L, d) temporaries)
_CHUNK = 4096


def experts_copy(model: MaskedWordModel) -> ContinuousWordExperts:
    """A float64, eval-mode experts-form copy of ``model`` (the conversion is exact)."""
    if isinstance(model, BidirectionalAttention):
        # convert in float64 so the tables equal the attention form's numbers to ~1e-15
        return copy.deepcopy(model).double().eval().to_experts()
    if isinstance(model, ContinuousWordExperts):
        return copy.deepcopy(model).double().eval()
    raise TypeError(
        f"experts tables need a BidirectionalAttention or ContinuousWordExperts, "
        f"got {type(model).__name__}"
    )


def covered(model: MaskedWordModel) -> bool:
    """Whether the tables give ``model``'s own numbers: a dense one-layer model in eval
    mode, float64 on the CPU (as the estimators keep their fitted models)."""
    cfg = model.config
    if cfg.n_layers != 1 or cfg.top_k is not None or cfg.window is not None:
        return False
    if not isinstance(model, (BidirectionalAttention, ContinuousWordExperts)):
        return False
    if model.training:  # its forward pass draws dropout masks; the tables draw none
        return False
    return all(p.dtype == torch.float64 and p.device.type == "cpu" for p in model.parameters())


def _layer_norm(z: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float):
    """LayerNorm over the last axis; also the normalised input and 1/std (for backward)."""
    centred = z - z.mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt((centred**2).mean(-1, keepdims=True) + eps)
    unit = centred * inv
    return unit * weight + bias, unit, inv


def _layer_norm_backward(grad: np.ndarray, weight: np.ndarray, unit: np.ndarray, inv: np.ndarray):
    g = grad * weight
    return inv * (g - g.mean(-1, keepdims=True) - unit * (g * unit).mean(-1, keepdims=True))


@dataclass
class Link:
    """The bert block's link ``LN2(h + FF(h))``, ``h = LN1(residual + context)``, in NumPy."""

    residual: np.ndarray  # (d,): the mask token's input at the predicted location
    norm1: tuple[np.ndarray, np.ndarray]
    ff1: tuple[np.ndarray, np.ndarray]  # weight (f, d), bias (f,)
    ff2: tuple[np.ndarray, np.ndarray]  # weight (d, f), bias (d,)
    norm2: tuple[np.ndarray, np.ndarray]
    eps: float
    gelu: bool

    def _act(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The activation and its derivative (ReLU, or the exact erf GELU)."""
        if not self.gelu:
            return np.maximum(a, 0.0), (a > 0).astype(a.dtype)
        cdf = 0.5 * (1.0 + erf(a / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
        return a * cdf, cdf + a * pdf

    def forward(self, context: np.ndarray) -> np.ndarray:
        """The link's output at ``context`` ``(..., d)``."""
        return self.forward_backward(context, None)[0]

    def forward_backward(self, context: np.ndarray, grad_out: np.ndarray | None):
        """The link's output at ``context`` (..., d) and, with ``grad_out``, the gradient
        of ``(output * grad_out).sum(-1)`` with respect to ``context``."""
        h, unit1, inv1 = _layer_norm(self.residual + context, *self.norm1, self.eps)
        a = h @ self.ff1[0].T + self.ff1[1]
        act, slope = self._act(a)
        out, unit2, inv2 = _layer_norm(h + act @ self.ff2[0].T + self.ff2[1], *self.norm2, self.eps)
        if grad_out is None:
            return out, None
        dz = _layer_norm_backward(grad_out, self.norm2[0], unit2, inv2)
        dh = dz + ((dz @ self.ff2[0]) * slope) @ self.ff1[0]
        return out, _layer_norm_backward(dh, self.norm1[0], unit1, inv1)


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Word ids ``lo`` (int64) and fractions ``t`` of codes ``x`` (``t`` is ``(0, 0)``
    when every code is whole), the layout of the compiled loop."""
    if x.dtype.kind in "iu":
        return np.ascontiguousarray(x, dtype=np.int64), np.zeros((0, 0))
    low = np.floor(x)
    t = x - low
    return np.ascontiguousarray(low, dtype=np.int64), (t if t.any() else np.zeros((0, 0)))


@dataclass
class MemberTables:
    """One model's tables for predicting location ``target``; the codes there are read as
    the mask id, whatever they hold (``masked_logits`` masks it the same way)."""

    target: int  # the predicted location
    mask_id: int
    scores: np.ndarray  # (H, L, V+1): the gate score of (location, word), the mask at target
    experts: np.ndarray  # (H, L, V+1, d): alpha_j(w)
    bias: np.ndarray  # (d,): context bias
    rho: np.ndarray  # (C, d): the classes' output rows
    b: np.ndarray  # (C,)
    link: Link | None  # bert form; None in the pure form

    @classmethod
    def of(cls, model: MaskedWordModel, n_classes: int, location: int = -1) -> MemberTables:
        """The tables of a one-layer ``model`` predicting ``location`` (default the last)
        over its first ``n_classes`` output words."""
        experts = experts_copy(model)
        word, cfg = experts.word_layer, experts.config
        target, mask = location % cfg.max_len, cfg.mask_id

        def a(t: torch.Tensor) -> np.ndarray:
            return t.detach().numpy().copy()

        query = a(word.gate_query[:, target, mask])  # (H, r)
        link = None
        if word.output.link is not None:
            block = word.output.link
            ff = block.feed_forward
            link = Link(
                residual=a(word.residual[target, mask]),
                norm1=(a(block.attention_norm.weight), a(block.attention_norm.bias)),
                ff1=(a(ff[0].weight), a(ff[0].bias)),
                ff2=(a(ff[2].weight), a(ff[2].bias)),
                norm2=(a(block.output_norm.weight), a(block.output_norm.bias)),
                eps=cfg.layer_norm_eps,
                gelu=cfg.activation == "gelu",
            )
        return cls(
            target=target,
            mask_id=mask,
            scores=np.einsum("hlwr,hr->hlw", a(word.gate_key), query),
            experts=a(word.experts),
            bias=a(word.context_bias),
            rho=a(experts.output.weight[:n_classes]),
            b=a(experts.output.bias[:n_classes]),
            link=link,
        )

    def gates_and_contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gates ``(B, H, L)`` of the predicted location and each expert's context share
        ``(B, H, L, d)`` for codes ``x`` ``(B, L)``."""
        x = np.array(x)
        x[:, self.target] = self.mask_id
        heads = np.arange(self.scores.shape[0])[None, :, None]
        locations = np.arange(x.shape[1])[None, None, :]
        # a fractional code c mixes words floor(c) and floor(c) + 1 by (1 - t, t); the
        # scores and experts are affine in the word embedding, so they mix the same way
        low = np.floor(x).astype(np.int64)
        t = (x - low)[:, None, :]  # (B, 1, L)
        high = np.where(t[:, 0] > 0, low + 1, low)[:, None, :]
        low = low[:, None, :]
        scores = (1 - t) * self.scores[heads, locations, low] + t * self.scores[
            heads, locations, high
        ]  # (B, H, L)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        gates = weights / weights.sum(-1, keepdims=True)
        experts = (1 - t)[..., None] * self.experts[heads, locations, low] + t[
            ..., None
        ] * self.experts[heads, locations, high]
        return gates, gates[..., None] * experts

    def logits(self, context: np.ndarray) -> np.ndarray:
        """The classes' logits ``(..., C)`` at context vectors ``(..., d)``."""
        hidden = context if self.link is None else self.link.forward(context)
        return hidden @ self.rho.T + self.b

    def shares(self, contributions: np.ndarray, context: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each expert's share ``(B, H, L)`` of the logit of class ``y`` (one per row)."""
        rho = self.rho[y]  # (B, d)
        if self.link is None:  # pure: exact, rho_y . pi_j alpha_j
            return np.einsum("bhld,bd->bhl", contributions, rho)
        # bert: integrated gradients along bias -> context, explain's midpoint rule
        steps = (np.arange(N_STEPS) + 0.5) / N_STEPS
        points = self.bias + steps[:, None, None] * (context - self.bias)  # (S, B, d)
        _, grads = self.link.forward_backward(points, np.broadcast_to(rho, points.shape))
        return np.einsum("bhld,bd->bhl", contributions, grads.mean(0))

    def _add_probabilities_numpy(self, x: np.ndarray, out: np.ndarray) -> None:
        """:meth:`add_probabilities` by NumPy broadcasting, a chunk of rows at a time."""
        for first in range(0, len(x), _CHUNK):
            _, contributions = self.gates_and_contributions(x[first : first + _CHUNK])
            logits = self.logits(contributions.sum((1, 2)) + self.bias)
            weights = np.exp(logits - logits.max(-1, keepdims=True))
            out[first : first + _CHUNK] += weights / weights.sum(-1, keepdims=True)

    @cached_property
    def _by_location(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The compiled loop's tables: scores ``(L, V+1, H)``, their per-head maximum
        ``top`` ``(H,)``, ``exp(scores - top)`` and the experts ``(L, V+1, H, d)``; a
        row's lookups at one location are adjacent."""
        scores = np.ascontiguousarray(self.scores.transpose(1, 2, 0))
        top = scores.max((0, 1))
        # a gate is exp(score) over its row's sum: any shift cancels, so the table's
        # own maximum serves every row and whole codes look their exponentials up
        return (
            scores,
            top,
            np.exp(scores - top),
            np.ascontiguousarray(self.experts.transpose(1, 2, 0, 3)),
        )

    def add_probabilities(self, x: np.ndarray, out: np.ndarray) -> None:
        """Add this model's class probabilities for codes ``x`` ``(B, L)`` to ``out``
        ``(B, C)``: compiled, one row at a time, or NumPy without numba."""
        if not HAVE_NUMBA:  # pragma: no cover - exercised only without numba
            self._add_probabilities_numpy(x, out)
            return
        low, t = _split(x)
        link = self.link
        if link is None:  # the pure form: arguments of the right types, unused
            none, flat = np.zeros(0), np.zeros((0, 0))
            arrays = (none, none, none, flat, none, flat, none, none, none)
            link_args = (False, arrays, 0.0, False)
        else:
            arrays = (link.residual, *link.norm1, *link.ff1, *link.ff2, *link.norm2)
            link_args = (True, arrays, link.eps, link.gelu)
        gates = (self.target, self.mask_id, *self._by_location, self.bias)
        _add_probabilities(low, t, *gates, *link_args, self.rho, self.b, out)


class ExpertTables:
    """Probabilities, gates and expert shares of one-layer models, from tables.

    Build with :meth:`of`; :meth:`probabilities` and :meth:`answer` take codes
    ``(B, L)`` with the predicted location holding the mask id (as
    :meth:`AttentionMoEClassifier.tokens <attnmoe.tabular.AttentionMoEClassifier.tokens>`
    gives them for the target).
    """

    def __init__(self, members: list[MemberTables], max_len: int) -> None:
        self.members = members
        self.mask_id = members[0].mask_id
        self.max_len = max_len

    @classmethod
    def of(
        cls, models: Sequence[MaskedWordModel], n_classes: int, location: int = -1
    ) -> ExpertTables | None:
        """The tables of ``models`` (an ensemble, averaged) predicting ``location`` over
        their first ``n_classes`` output words; None when a model is not
        :func:`covered` (those keep the torch path)."""
        if not models or not all(covered(model) for model in models):
            return None
        members = [MemberTables.of(model, n_classes, location) for model in models]
        return cls(members, models[0].config.max_len)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``(B, C)`` class probabilities averaged over the members, as ``masked_logits``
        and a softmax give them; codes are checked as the models check them."""
        x = np.asarray(x)
        if x.ndim != 2 or not self.members[0].target < x.shape[1] <= self.max_len:
            raise ValueError(
                f"codes must be (batch, length) with {self.members[0].target} < length <= "
                f"{self.max_len}, got shape {x.shape}"
            )
        check_codes(torch.from_numpy(x), self.mask_id)
        out = np.zeros((len(x), len(self.members[0].b)))
        for member in self.members:
            member.add_probabilities(x, out)
        return out / len(self.members)

    def answer(
        self, x: np.ndarray, proba: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pass over the members for codes ``x`` ``(B, L)``.

        Returns
        -------
        proba : ndarray
            ``(B, C)`` class probabilities averaged over the members, as
            :meth:`probabilities` (``proba`` when given: then only the experts are
            computed).
        share, gate : ndarray
            ``(B, H, L)``: per row, head and location, the share of the most probable
            class's logit summed over the members, and the gate averaged over them (as
            :func:`~attnmoe.explain.top_experts` pools an ensemble).
        """
        proba = self.probabilities(x) if proba is None else proba
        y = proba.argmax(1)
        share = gate = 0.0
        for member in self.members:
            gates, contributions = member.gates_and_contributions(x)
            context = contributions.sum((1, 2)) + member.bias
            share = share + member.shares(contributions, context, y)
            gate = gate + gates
        return proba, share, gate / len(self.members)


if HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True)
    def _norm_(z, weight, bias, eps):  # pragma: no cover - compiled
        # LayerNorm of the vector z in place (torch's: biased variance, eps inside the root)
        n = z.shape[0]
        mean = 0.0
        for k in range(n):
            mean += z[k]
        mean /= n
        var = 0.0
        for k in range(n):
            z[k] -= mean
            var += z[k] * z[k]
        inv = 1.0 / math.sqrt(var / n + eps)
        for k in range(n):
            z[k] = z[k] * inv * weight[k] + bias[k]

    @numba.njit(cache=True, nogil=True)
    def _gate(scores, shift, j, w, h, s):  # pragma: no cover - compiled
        # exp of a fractional word's gate score (scores interpolated, not exponentials)
        return math.exp((1.0 - s) * scores[j, w, h] + s * scores[j, w + 1, h] - shift)

    @numba.njit(cache=True, nogil=True)
    def _mix_row(  # pragma: no cover - compiled
        low, t, target, mask_id, b, scores, shift, gate_exp, experts, exact, acc, total
    ):
        # acc[h] = sum_j exp(score_hj - shift_h) alpha_j(x_j), total[h] = sum_j exp(...).
        # Whole codes read exp(score - shift) from gate_exp (unless exact: shift is then
        # the row's own and every gate is computed); a fractional code (t > 0) mixes its
        # two words' scores and experts by (1 - t, t). The target location holds the mask.
        n_heads, d = experts.shape[2], experts.shape[3]
        fractional = t.shape[0] > 0
        for h in range(n_heads):
            total[h] = 0.0
            for k in range(d):
                acc[h, k] = 0.0
        for j in range(low.shape[1]):
            w = mask_id if j == target else low[b, j]
            s = t[b, j] if fractional and j != target else 0.0
            for h in range(n_heads):
                expert = experts[j, w, h]
                if s > 0.0:
                    score = (1.0 - s) * scores[j, w, h] + s * scores[j, w + 1, h]
                    gate = math.exp(score - shift[h])
                    after = experts[j, w + 1, h]
                    for k in range(d):
                        acc[h, k] += gate * ((1.0 - s) * expert[k] + s * after[k])
                else:
                    gate = math.exp(scores[j, w, h] - shift[h]) if exact else gate_exp[j, w, h]
                    for k in range(d):
                        acc[h, k] += gate * expert[k]
                total[h] += gate

    @numba.njit(cache=True, nogil=True)
    def _context_row(  # pragma: no cover - compiled
        low, t, target, mask_id, b, scores, top, gate_exp, experts, bias, acc, total,
        row_top, context,
    ):  # fmt: skip
        # context = bias + sum_h acc[h] / total[h]: the gates pi_hj = exp(s_hj) / sum_j
        args = (low, t, target, mask_id, b, scores)
        _mix_row(*args, top, gate_exp, experts, False, acc, total)
        least = total[0]
        for h in range(total.shape[0]):
            least = min(least, total[h])
        if least < 1e-30:  # a head's gates all far below the table's top: shift by the
            # row's own maximum instead (exact, as the softmax is shift-invariant)
            fractional = t.shape[0] > 0
            for h in range(total.shape[0]):
                row_top[h] = -np.inf
            for j in range(low.shape[1]):
                w = mask_id if j == target else low[b, j]
                s = t[b, j] if fractional and j != target else 0.0
                for h in range(total.shape[0]):
                    score = scores[j, w, h]
                    if s > 0.0:
                        score = (1.0 - s) * score + s * scores[j, w + 1, h]
                    row_top[h] = max(row_top[h], score)
            _mix_row(*args, row_top, gate_exp, experts, True, acc, total)
        for k in range(context.shape[0]):
            context[k] = bias[k]
        for h in range(total.shape[0]):
            inv = 1.0 / total[h]
            for k in range(context.shape[0]):
                context[k] += acc[h, k] * inv

    @numba.njit(cache=True, nogil=True)
    def _add_probabilities(  # pragma: no cover - compiled
        low, t, target, mask_id, scores, top, gate_exp, experts, bias, has_link, link, eps,
        gelu, rho, rho_b, out,
    ):  # fmt: skip
        # Per row: the context (_context_row), the bert link, the logits and their
        # softmax, added to out.
        residual, n1w, n1b, f1w, f1b, f2w, f2b, n2w, n2b = link
        n_heads, d = experts.shape[2], experts.shape[3]
        acc = np.empty((n_heads, d))
        total = np.empty(n_heads)
        row_top = np.empty(n_heads)
        context = np.empty(d)
        hidden = np.empty(d)
        inner = np.empty(f1b.shape[0])
        logits = np.empty(rho_b.shape[0])
        for b in range(low.shape[0]):
            _context_row(
                low, t, target, mask_id, b, scores, top, gate_exp, experts, bias, acc, total,
                row_top, context,
            )  # fmt: skip
            if has_link:  # h = LN1(residual + context); LN2(h + FF(h))
                for k in range(d):
                    context[k] += residual[k]
                _norm_(context, n1w, n1b, eps)
                for f in range(inner.shape[0]):
                    a = f1b[f]
                    for k in range(d):
                        a += f1w[f, k] * context[k]
                    if gelu:
                        inner[f] = a * 0.5 * (1.0 + math.erf(a / math.sqrt(2.0)))
                    else:
                        inner[f] = max(a, 0.0)
                for k in range(d):
                    z = f2b[k]
                    for f in range(inner.shape[0]):
                        z += f2w[k, f] * inner[f]
                    hidden[k] = context[k] + z
                _norm_(hidden, n2w, n2b, eps)
            else:
                for k in range(d):
                    hidden[k] = context[k]
            best = -np.inf
            for c in range(logits.shape[0]):
                z = rho_b[c]
                for k in range(d):
                    z += rho[c, k] * hidden[k]
                logits[c] = z
                best = max(best, z)
            norm = 0.0
            for c in range(logits.shape[0]):
                logits[c] = math.exp(logits[c] - best)
                norm += logits[c]
            for c in range(logits.shape[0]):
                out[b, c] += logits[c] / norm
