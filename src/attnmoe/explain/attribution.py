"""Per-prediction explanations: gate weights and each expert's share of the logit.

In the experts form (paper section 2, ``docs/math.md``) the logit of class
``y`` at the masked location ``i`` of a pure model is

    logit_y = sum_h sum_j rho_y . pi^h_ij alpha^h_j(x_j)  +  rho_y . b_O + b_y

so ``rho_y . pi^h_ij alpha^h_j(x_j)`` is an *exact* additive contribution of
expert ``j`` (a word location, a table column) through head ``h``; the rest is an
intercept. Deeper pure models unroll into one MoE per head path
(``effective_gates`` / ``effective_experts``), still exactly additive. The bert
form passes the context through a fixed nonlinear link (LayerNorm, feed-forward),
so only the contributions to the *pre-link* context vector are exact; their
share of the logit is approximated (integrated gradients along the straight
line from the experts-off context, or a linearization at the actual point) and
reported as ``approx_logit_contribution``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..model import BidirectionalAttention, ContinuousWordExperts
from ..model.base import MaskedWordModel
from ..model.tables import experts_copy
from ..tabular.encoding import label_indices

Method = Literal["integrated_gradients", "linearization"]

#: Column order of every explanation frame.
COLUMNS = [
    "row",
    "member",
    "class",
    "class_index",
    "logit",
    "kind",
    "layer",
    "head",
    "path",
    "location",
    "feature",
    "value",
    "token",
    "gate",
    "contribution",
    "approx_logit_contribution",
    "context_norm",
]


def as_experts(model: MaskedWordModel) -> ContinuousWordExperts:
    """A float64, eval-mode experts-form copy of ``model`` (the conversion is exact, so
    the additive decomposition holds to ~1e-12)."""
    if isinstance(model, (BidirectionalAttention, ContinuousWordExperts)):
        return experts_copy(model)
    raise TypeError(
        f"explain needs a BidirectionalAttention, ContinuousWordExperts or "
        f"AttentionMoEClassifier, got {type(model).__name__}"
    )


def _final_layer_input(
    experts: ContinuousWordExperts, x: Tensor, i: int, key_mask: Tensor | None
) -> tuple[Tensor, torch.nn.Module, Tensor]:
    """Residual at ``i`` entering the final link, that link, and the final context bias."""
    cfg = experts.config
    word = experts.word_layer
    if cfg.n_layers == 1:
        residual = word.residual[i, cfg.mask_id].expand(x.shape[0], -1)
        return residual, word.output, word.context_bias
    h = experts.last_layer_input(x, i, key_mask)
    last = experts.context_layers[-1]
    return h[:, i], last.output, last.context_bias


@torch.no_grad()
def _decompose(
    experts: ContinuousWordExperts,
    x: Tensor,
    i: int,
    targets: Tensor,
    key_mask: Tensor | None,
    method: Method,
    n_steps: int,
) -> dict[str, Any]:
    """The numbers behind one explanation, for rows ``x`` and classes ``targets``."""
    cfg = experts.config
    rho = experts.output.weight[targets]  # (B, d)
    b = experts.output.bias[targets]  # (B,)
    logits = experts.masked_logits(x, positions=i, key_mask=key_mask, method="copies")[:, 0]
    logit = logits.gather(1, targets[:, None])[:, 0]
    contrib = experts.contributions(x, i, key_mask)  # (B, P, L, d)
    context_norm = contrib.norm(dim=-1)
    matrices = experts.gate_matrices(x, i, key_mask)
    layer_gates = [g[:, :, i] for g in matrices]  # per layer (B, H, L)
    if cfg.block == "pure":
        if cfg.n_layers == 1:
            gates, bias = layer_gates[0], experts.word_layer.context_bias
        else:
            gates = experts.effective_gates(x, i, key_mask)
            bias = experts.effective_experts(x, i)[1]
        exact = torch.einsum("bpld,bd->bpl", contrib, rho)
        intercept = rho @ bias + b
        return dict(
            logit=logit,
            gates=gates,
            layer_gates=layer_gates,
            exact=exact,
            approx=exact,
            intercept=intercept,
            approx_intercept=intercept,
            context_norm=context_norm,
        )
    # bert: exact contributions to the pre-link context, approximate through the link
    residual, link, bias = _final_layer_input(experts, x, i, key_mask)
    context = contrib.sum((1, 2)) + bias
    base = bias.expand_as(context)

    def class_logit(c: Tensor) -> Tensor:
        return (link(residual, c) * rho).sum(-1) + b

    with torch.enable_grad():
        if method == "integrated_gradients":
            # midpoint rule along base -> context; attributions add up to
            # logit - logit(base) up to the quadrature error
            grads = torch.zeros_like(context)
            for step in range(n_steps):
                t = (step + 0.5) / n_steps
                point = (base + t * (context - base)).detach().requires_grad_(True)
                grads += torch.autograd.grad(class_logit(point).sum(), point)[0]
            grads /= n_steps
            approx_intercept = class_logit(base).detach()
        elif method == "linearization":
            point = context.detach().requires_grad_(True)
            grads = torch.autograd.grad(class_logit(point).sum(), point)[0]
            # first-order expansion at the actual point: logit = const + sum of shares
            approx_intercept = (logit - (grads * (context - base)).sum(-1)).detach()
        else:
            raise ValueError(
                f"method must be 'integrated_gradients' or 'linearization': {method!r}"
            )
    approx = torch.einsum("bpld,bd->bpl", contrib, grads)
    return dict(
        logit=logit,
        gates=layer_gates[-1],
        layer_gates=layer_gates,
        exact=None,
        approx=approx,
        intercept=None,
        approx_intercept=approx_intercept,
        context_norm=context_norm,
    )


def _path_names(n_heads: int, n_layers: int) -> list[str]:
    # row-major over (h_N, ..., h_1), as effective_gates enumerates them
    names = [""]
    for _ in range(n_layers):
        names = [f"{h}>{rest}" if rest else str(h) for h in range(n_heads) for rest in names]
    return names


def _frame(
    parts: dict[str, Any],
    cfg,
    rows: np.ndarray,
    member: int,
    class_labels: np.ndarray,
    class_index: np.ndarray,
    tokens: np.ndarray,
    features: Sequence[str] | None,
    values: np.ndarray | None,
) -> pd.DataFrame:
    """Tidy rows: one per (row, class, head or path, location), plus gates and intercepts."""
    n, length = tokens.shape
    logit = parts["logit"].numpy()
    feature_of = np.asarray(features if features is not None else [""] * length, dtype=object)
    value_of = values if values is not None else np.full((n, length), "", dtype=object)
    frames = []

    def block(gates: Tensor, layer: int, heads: np.ndarray, paths: list[str], kind: str, **cols):
        b, p, ell = gates.shape
        rr = np.repeat(np.arange(b), p * ell)
        pp = np.tile(np.repeat(np.arange(p), ell), b)
        jj = np.tile(np.arange(ell), b * p)
        data = {
            "row": rows[rr],
            "member": member,
            "class": class_labels[rr],
            "class_index": class_index[rr],
            "logit": logit[rr],
            "kind": kind,
            "layer": layer,
            "head": heads[pp],
            "path": np.asarray(paths, dtype=object)[pp],
            "location": jj,
            "feature": feature_of[jj],
            "value": value_of[rr, jj],
            "token": tokens[rr, jj],
            "gate": gates.reshape(-1).numpy(),
        }
        for name, t in cols.items():
            data[name] = np.nan if t is None else t.reshape(-1).numpy()
        frames.append(pd.DataFrame(data))

    h, n_layers = cfg.n_heads, cfg.n_layers
    deep_pure = cfg.block == "pure" and n_layers > 1
    if n_layers > 1:
        for layer, gates in enumerate(parts["layer_gates"], start=1):
            block(gates, layer, np.arange(h), [""] * h, "gate")
    if deep_pure:
        paths = _path_names(h, n_layers)
        heads = np.array([int(p.split(">")[0]) for p in paths])
    else:
        paths, heads = [""] * h, np.arange(h)
    block(
        parts["gates"],
        n_layers,
        heads,
        paths,
        "expert",
        contribution=parts["exact"],
        approx_logit_contribution=parts["approx"],
        context_norm=parts["context_norm"],
    )
    intercept = pd.DataFrame(
        {
            "row": rows,
            "member": member,
            "class": class_labels,
            "class_index": class_index,
            "logit": logit,
            "kind": "intercept",
            "layer": n_layers,
            "head": -1,
            "path": "",
            "location": -1,
            "feature": "(intercept)",
            "value": "",
            "token": -1,
            "gate": np.nan,
            "contribution": np.nan if parts["intercept"] is None else parts["intercept"].numpy(),
            "approx_logit_contribution": parts["approx_intercept"].numpy(),
            "context_norm": np.nan,
        }
    )
    frames.append(intercept)
    out = pd.concat(frames, ignore_index=True)
    return out[COLUMNS]


def _explain_model(
    model: MaskedWordModel,
    x: Tensor,
    i: int,
    classes: Any,
    key_mask: Tensor | None,
    method: Method,
    n_steps: int,
) -> pd.DataFrame:
    experts = as_experts(model)
    x = torch.as_tensor(x)
    if not x.is_floating_point():  # float: fractional codes of numeric columns, kept
        x = x.long()
    if x.ndim == 1:
        x = x[None]
    if i is None:
        raise ValueError("explaining a model needs the predicted location i")
    n = x.shape[0]
    if classes is None:
        with torch.no_grad():
            targets = experts.masked_logits(x, i, key_mask, method="copies")[:, 0].argmax(-1)
    else:
        targets = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
        if targets.numel() == 1:
            targets = targets.expand(n)
        if targets.numel() != n:
            raise ValueError(f"classes: one per row expected ({n}), got {targets.numel()}")
    parts = _decompose(experts, x, i, targets, key_mask, method, n_steps)
    t = targets.numpy()
    return _frame(parts, experts.config, np.arange(n), 0, t, t, x.numpy(), None, None)


def _class_targets(clf, X_frame: pd.DataFrame, classes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row index and class index per explained (row, class) pair."""
    n, n_classes = len(X_frame), len(clf.classes_)
    if classes is None:
        best = clf.predict_proba(X_frame).argmax(1)
        return np.arange(n), best
    if isinstance(classes, str) and classes == "all":
        return np.repeat(np.arange(n), n_classes), np.tile(np.arange(n_classes), n)
    labels = np.asarray(classes, dtype=object).reshape(-1)
    if labels.size == 1:
        labels = np.repeat(labels, n)
    if labels.size != n:
        raise ValueError(f"classes: one label per row expected ({n}), got {labels.size}")
    index = label_indices(clf.classes_, labels)
    if (index < 0).any():
        label = labels[np.flatnonzero(index < 0)[0]]
        raise ValueError(f"unknown class {label!r}; classes are {list(clf.classes_)}")
    return np.arange(n), index


def _explain_classifier(
    clf, X, classes: Any, method: Method, n_steps: int, members: Sequence[int] | None
) -> pd.DataFrame:
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(clf)
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
    frame = frame.reset_index(drop=True)
    rows, class_index = _class_targets(clf, frame, classes)
    tokens = clf.tokens(frame)
    target = tokens.shape[1] - 1
    names = getattr(clf, "feature_names_in_", None)
    names = [str(c) for c in names] if names is not None else [f"x{j}" for j in range(target)]
    values = np.empty((len(rows), target + 1), dtype=object)
    values[:, :target] = frame.astype(object).to_numpy()[rows].astype(str)
    values[:, target] = "(masked)"
    labels = np.asarray(clf.classes_, dtype=object)[class_index]
    out = []
    for m, model in enumerate(clf.models_):
        if members is not None and m not in members:
            continue
        experts = as_experts(model)
        x = tokens[rows]
        parts = _decompose(experts, x, target, torch.as_tensor(class_index), None, method, n_steps)
        out.append(
            _frame(
                parts,
                experts.config,
                rows,
                m,
                labels,
                class_index,
                x.numpy(),
                [*names, "(target)"],
                values,
            )
        )
    return pd.concat(out, ignore_index=True)


def explain(
    model: Any,
    X: Any,
    i: int | None = None,
    classes: Any = None,
    *,
    key_mask: Tensor | None = None,
    method: Method = "integrated_gradients",
    n_steps: int = 32,
    members: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Explain predictions: gate weights per expert and each expert's share of the logit.

    Parameters
    ----------
    model
        A :class:`~attnmoe.BidirectionalAttention` or
        :class:`~attnmoe.ContinuousWordExperts` (then ``X`` are token ids and
        ``i`` the predicted location), or a fitted
        :class:`~attnmoe.tabular.AttentionMoEClassifier` (then ``X`` are table
        rows and the target is the predicted location).
    X
        ``(B, L)`` token ids, or a table (DataFrame / array) for a classifier.
    i
        Predicted (masked) location; models only.
    classes
        Which class (word) to explain: None = the predicted one; one label for
        every row; one label per row; ``"all"`` (classifier) = every class.
    key_mask
        ``(B, L)`` bool, False at padding (models only).
    method
        Bert form only: ``"integrated_gradients"`` (attributions along the
        straight line from the experts-off context ``b_O`` to the actual one; they
        add up to the logit up to a small quadrature error) or
        ``"linearization"`` (gradient x contribution at the actual point; the
        intercept is the expansion's constant, so the sum is the logit).
    n_steps
        Integration steps of ``"integrated_gradients"``.
    members
        Classifier ensembles: which members to explain (default all).

    Returns
    -------
    pandas.DataFrame
        One row per (row, member, class, head or head path, location) with
        ``kind == "expert"``; one ``kind == "intercept"`` row per explained
        prediction; deeper models add ``kind == "gate"`` rows with each layer's
        gates. Columns:

        - ``row``, ``member``, ``class``, ``class_index``, ``logit`` (the member's
          logit of that class);
        - ``layer`` (1-based), ``head``, ``path`` (deeper pure models: head path
          ``"h_N>...>h_1"``), ``location`` (expert; the column for tables),
          ``feature``, ``value``, ``token``;
        - ``gate``: ``pi_ij`` (the effective path gate for deeper pure models);
        - ``contribution``: exact share of the logit ``rho_y . pi_ij alpha_j`` (pure
          form; the intercept row holds ``rho_y . b + b_y``), NaN in the bert form;
        - ``approx_logit_contribution``: the bert form's approximate share (equal
          to ``contribution`` in the pure form);
        - ``context_norm``: ``|pi_ij alpha_j|``, the size of the exact share of
          the context vector (the vectors themselves:
          :meth:`~attnmoe.ContinuousWordExperts.contributions`).

    Examples
    --------
    >>> import torch
    >>> from attnmoe import AttentionConfig, BidirectionalAttention
    >>> from attnmoe.explain import explain
    >>> model = BidirectionalAttention(AttentionConfig(vocab_size=6, max_len=4, n_heads=2))
    >>> frame = explain(model, torch.tensor([[1, 2, 3, 4]]), i=2)
    >>> parts = frame[frame.kind != "gate"]
    >>> bool(abs(parts.contribution.sum() - frame.logit.iloc[0]) < 1e-6)
    True
    """
    if hasattr(model, "models_") and hasattr(model, "encoder_"):
        return _explain_classifier(model, X, classes, method, n_steps, members)
    if hasattr(model, "encoder_") or hasattr(model, "classes_"):
        raise TypeError("explain supports fitted AttentionMoEClassifier estimators")
    if isinstance(model, MaskedWordModel):
        return _explain_model(model, X, i, classes, key_mask, method, n_steps)
    # unfitted estimators and foreign objects get a clear message
    from sklearn.utils.validation import check_is_fitted

    if hasattr(model, "fit"):
        check_is_fitted(model)
    raise TypeError(f"cannot explain a {type(model).__name__}")


def top_experts(frame: pd.DataFrame, n: int = 3, by: str | None = None) -> pd.DataFrame:
    """The ``n`` experts with the largest share of each explained prediction.

    Sums over heads (and members) per (row, class, location) and ranks by the
    exact ``contribution`` where present, else ``approx_logit_contribution``.
    """
    experts = frame[frame["kind"] == "expert"]
    if by is None:
        by = (
            "contribution" if experts["contribution"].notna().all() else "approx_logit_contribution"
        )
    keys = ["row", "class", "location", "feature", "value"]
    summed = (
        experts.groupby(keys, sort=False, dropna=False)
        .agg(share=(by, "sum"), gate=("gate", "mean"))
        .reset_index()
    )
    summed["abs_share"] = summed["share"].abs()
    ranked = summed.sort_values(["row", "abs_share"], ascending=[True, False])
    return ranked.groupby(["row", "class"], sort=False).head(n).drop(columns="abs_share")
