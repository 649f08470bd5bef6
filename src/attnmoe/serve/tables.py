"""One-layer classifiers answered from precomputed experts-form tables (NumPy, float64).

A one-layer model predicts the masked target from its columns in one mixture of
experts (``docs/math.md``): the target's query is fixed (the mask token at the
target location), so each head's gate score of column ``j`` holding word ``w`` is
a number looked up in a table, and so is the expert ``alpha_j(w)``. For a row this
gives the gates, the context vector, the logits and each expert's share of the
predicted class's logit with a few array lookups: the same numbers as
:func:`~attnmoe.explain.explain` (pure form: the exact shares; bert form: the
integrated gradients through the link, same midpoints) and as
``predict_proba`` (to rounding: these run in float64, the model in float32).

:class:`ExpertTables` holds the tables of every ensemble member;
:meth:`ExpertTables.for_classifier` returns None for the models this does not
cover (more than one layer, sparse or windowed gating), which keep the
``explain`` path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from ..explain.attribution import as_experts

#: midpoints of the integrated gradients (``explain``'s default ``n_steps``)
N_STEPS = 32


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
class _Link:
    """The bert block's link ``LN2(h + FF(h))``, ``h = LN1(residual + context)``, in NumPy."""

    residual: np.ndarray  # (d,): the mask token's input at the target location
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


@dataclass
class _Member:
    """One ensemble member's tables."""

    scores: np.ndarray  # (H, L, V+1): the target's gate score of (location, word)
    experts: np.ndarray  # (H, L, V+1, d): alpha_j(w)
    bias: np.ndarray  # (d,): context bias
    rho: np.ndarray  # (C, d): the classes' output rows
    b: np.ndarray  # (C,)
    link: _Link | None  # bert form; None in the pure form

    @classmethod
    def of(cls, model, n_classes: int) -> _Member:
        experts = as_experts(model)  # float64 copy: the same conversion as explain's
        word, cfg = experts.word_layer, experts.config
        target, mask = cfg.max_len - 1, cfg.mask_id

        def a(t) -> np.ndarray:
            return t.detach().numpy().copy()

        query = a(word.gate_query[:, target, mask])  # (H, r)
        link = None
        if word.output.link is not None:
            block = word.output.link
            ff = block.feed_forward
            link = _Link(
                residual=a(word.residual[target, mask]),
                norm1=(a(block.attention_norm.weight), a(block.attention_norm.bias)),
                ff1=(a(ff[0].weight), a(ff[0].bias)),
                ff2=(a(ff[2].weight), a(ff[2].bias)),
                norm2=(a(block.output_norm.weight), a(block.output_norm.bias)),
                eps=cfg.layer_norm_eps,
                gelu=cfg.activation == "gelu",
            )
        return cls(
            scores=np.einsum("hlwr,hr->hlw", a(word.gate_key), query),
            experts=a(word.experts),
            bias=a(word.context_bias),
            rho=a(experts.output.weight[:n_classes]),
            b=a(experts.output.bias[:n_classes]),
            link=link,
        )

    def gates_and_contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gates ``(B, H, L)`` of the target and each expert's context share ``(B, H, L, d)``."""
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


class ExpertTables:
    """Probabilities, gates and expert shares of a one-layer classifier, from tables.

    Build with :meth:`for_classifier`; :meth:`probabilities` and :meth:`experts`
    take token rows as :meth:`AttentionMoEClassifier.tokens
    <attnmoe.tabular.AttentionMoEClassifier.tokens>` gives them (target masked).
    """

    def __init__(self, members: list[_Member]) -> None:
        self.members = members

    @classmethod
    def for_classifier(cls, clf) -> ExpertTables | None:
        """The tables of ``clf``'s members; None when a member is not a dense one-layer
        model (those are explained by :func:`~attnmoe.explain.explain` instead)."""
        for model in clf.models_:
            cfg = model.config
            if cfg.n_layers != 1 or cfg.top_k is not None or cfg.window is not None:
                return None
        return cls([_Member.of(model, len(clf.classes_)) for model in clf.models_])

    def answer(
        self, x: np.ndarray, proba: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pass over the members for token rows ``x`` ``(B, L)``.

        Returns
        -------
        proba : ndarray
            ``(B, C)`` class probabilities averaged over the members, as
            ``predict_proba`` (``proba`` when given: then only the experts are computed).
        share, gate : ndarray
            ``(B, H, L)``: per row, head and location, the share of the most probable
            class's logit summed over the members, and the gate averaged over them (as
            :func:`~attnmoe.explain.top_experts` pools an ensemble).
        """
        parts = []
        total = 0.0
        for member in self.members:
            gates, contributions = member.gates_and_contributions(x)
            context = contributions.sum((1, 2)) + member.bias
            parts.append((member, gates, contributions, context))
            if proba is None:
                logits = member.logits(context)
                weights = np.exp(logits - logits.max(-1, keepdims=True))
                total = total + weights / weights.sum(-1, keepdims=True)
        proba = total / len(self.members) if proba is None else proba
        y = proba.argmax(1)
        share = sum(m.shares(c, ctx, y) for m, _, c, ctx in parts)
        gate = sum(g for _, g, _, _ in parts) / len(parts)
        return proba, share, gate
