"""The mixture-of-experts arithmetic shared by both model forms.

Every form computes, per head, a gate ``pi_ij = softmax_j(q_i . k_j)`` and a
context ``o_i = sum_j pi_ij v_j``. The attention form gets ``q, k, v`` from
projections of embeddings; the continuous-word-experts form looks them up in
tables. Keeping the arithmetic here means the two forms cannot drift apart.

Shapes: B batch, H heads, L locations, r gate rank, e expert width.

Codes. A ``(B, L)`` codes matrix is an integer tensor of word ids, or a floating
tensor of continuous codes: code ``c`` at a location stands for the word input
``(1 - t) * E[lo] + t * E[lo + 1]`` with ``lo = floor(c)`` and ``t = c - lo``
(exactly word ``lo`` where ``t == 0``). :func:`lookup_codes` is the one place
that reads a table this way; :func:`check_codes` states the rules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: floating dtypes a codes matrix may have (half precision cannot hold word ids exactly)
CODE_DTYPES = (torch.float32, torch.float64)


def check_codes(x: Tensor, mask_id: int, what: str = "token ids") -> None:
    """Refuse a codes matrix outside the convention, with a one-line ``ValueError``.

    Integer codes must lie in ``[0, mask_id]``. Floating codes must be finite, lie
    in ``[0, mask_id]``, and a fractional code must not reach into the mask id:
    ``floor(c) + 1 < mask_id`` (the mask token is the exact code ``mask_id``).
    """
    if x.dtype.is_floating_point and x.dtype not in CODE_DTYPES:
        raise TypeError(f"{what} must be integer or float32/float64 codes, got {x.dtype}")
    if not x.numel():
        return
    if x.dtype.is_floating_point:
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{what} must be finite codes, got NaN or infinity")
        lowest, highest = float(x.min()), float(x.max())
        if lowest < 0 or highest > mask_id:
            raise ValueError(
                f"{what} must lie in [0, {mask_id}] (mask id included), "
                f"got [{lowest:g}, {highest:g}]"
            )
        fractional = x != x.floor()
        if bool(fractional.any()) and float(x[fractional].max()) >= mask_id - 1:
            raise ValueError(
                f"{what}: a fractional code c needs floor(c) + 1 < {mask_id} (it must not "
                f"interpolate into the mask id), got {float(x[fractional].max()):g}"
            )
        return
    if int(x.min()) < 0 or int(x.max()) > mask_id:
        raise ValueError(
            f"{what} must lie in [0, {mask_id}] (mask id included), "
            f"got [{int(x.min())}, {int(x.max())}]"
        )


def split_codes(x: Tensor) -> tuple[Tensor, Tensor | None]:
    """Word ids ``lo`` (long) and weights ``t`` of a codes matrix; ``t`` is None where no
    code is fractional (integer tensors, or floating ones holding whole codes only)."""
    if not x.dtype.is_floating_point:
        return x, None
    floor = x.floor()
    lo = floor.long()
    t = x - floor
    return lo, (t if bool(t.any()) else None)


def lookup_codes(gather: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The rows a codes matrix selects from a (location, word) or word table.

    ``gather(ids)`` maps ``(B, L)`` word ids to rows ``(..., B, L, e)``. Integer codes
    (and floating ones that are all whole) return ``gather(ids)`` itself; a fractional
    code returns ``(1 - t) * gather(lo) + t * gather(lo + 1)``. Tables that are affine
    in the word's input embedding (the experts form's gate, expert and residual
    tables) are thereby the table of the interpolated embedding, exactly.
    """
    lo, t = split_codes(x)
    if t is None:
        return gather(lo)
    # lo + 1 only where t > 0: a whole code may be the last word or the mask id
    low, high = gather(lo), gather(lo + (t > 0))
    t = t.to(low.dtype).unsqueeze(-1)
    return (1 - t) * low + t * high


def softmax_last(scores: Tensor) -> Tensor:
    """Softmax over the last dimension, written out."""
    # gate rows are short (one entry per location): on CPU these few element-wise ops
    # beat the fused softmax kernel for such rows, and small models spend much time here
    shifted = scores - scores.detach().amax(-1, keepdim=True)
    weights = shifted.exp()
    return weights / weights.sum(-1, keepdim=True)


def log_softmax_last(logits: Tensor) -> Tensor:
    """``log_softmax`` over the last dimension, written out (see :func:`softmax_last`)."""
    shifted = logits - logits.detach().amax(-1, keepdim=True)
    return shifted - shifted.exp().sum(-1, keepdim=True).log()


def _scores_to_gates(
    scores: Tensor,
    key_mask: Tensor | None,
    top_k: int | None = None,
    window: int | None = None,
) -> Tensor:
    # scores: (B, H, L, L); key_mask: (B, L) True where a location holds a token
    blocked = None  # (B or 1, 1, L, L) True where expert j may not serve location i
    if key_mask is not None:
        blocked = ~key_mask[:, None, None, :]
        scores = scores.masked_fill(blocked, float("-inf"))
    length = scores.shape[-1]
    if window is not None and window < length - 1:
        # cost knob: expert j may serve location i only when |i - j| <= window
        locations = torch.arange(length, device=scores.device)
        far = (locations[:, None] - locations[None, :]).abs() > window
        scores = scores.masked_fill(far, float("-inf"))
        blocked = far if blocked is None else blocked | far
    if top_k is not None and top_k < length:
        # cost knob: keep the k largest gate scores per prediction (ties kept), renormalise
        kth = scores.topk(top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if blocked is None:
        return softmax_last(scores)
    # a location with no expert left (padding all around it) mixes nothing: zero gates,
    # not the NaN of a softmax over -inf only, which would spread through later layers
    # and the loss (0 * NaN is NaN), forwards and backwards
    empty = blocked.all(-1, keepdim=True)  # (B or 1, 1, L, 1)
    return softmax_last(scores.masked_fill(empty, 0.0)).masked_fill(empty, 0.0)


def mix_experts(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None = None,
    top_k: int | None = None,
    window: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Gate and mix experts for every location of an already-masked input.

    Parameters
    ----------
    q, k
        Gate queries and keys, ``(B, H, L, r)``; any scaling is already applied.
    v
        Experts, ``(B, H, L, e)``.
    key_mask
        ``(B, L)`` bool, False at padding (those experts get zero weight).
    top_k
        Sparse gating: only the ``top_k`` largest scores per row keep weight.
    window
        Only experts within ``window`` locations of the predicted one keep weight.

    Returns
    -------
    context : Tensor
        ``(B, H, L, e)``, ``context[..., i, :] = sum_j pi_ij v_j``.
    gates : Tensor
        ``(B, H, L, L)``, ``pi_ij``.
    """
    gates = _scores_to_gates(q @ k.transpose(-1, -2), key_mask, top_k, window)  # (B, H, L, L)
    return gates @ v, gates


def mix_experts_one_pass(
    q_mask: Tensor,
    k: Tensor,
    k_mask: Tensor,
    v: Tensor,
    v_mask: Tensor,
    key_mask: Tensor | None = None,
    top_k: int | None = None,
    window: int | None = None,
) -> tuple[Tensor, Tensor]:
    """All L single-location maskings of a sentence in one L x L pass.

    Row ``i`` is the prediction for location ``i`` when only ``i`` holds the mask
    token: its query is the mask's query at ``i``, expert ``j != i`` sees the real
    word ``x_j`` and expert ``i`` sees the mask. Masking ``i`` changes nothing
    else in a one-layer model, so this equals ``L`` separate masked copies.

    Parameters
    ----------
    q_mask, k_mask
        Query and key of the mask token at each location, ``(B or 1, H, L, r)``.
    k
        Keys of the real words, ``(B, H, L, r)``.
    v, v_mask
        Experts of the real words ``(B, H, L, e)`` and of the mask token at each
        location ``(B or 1, H, L, e)``.
    key_mask
        ``(B, L)`` bool, False at padding.
    top_k, window
        Gate sparsity, as in :func:`mix_experts`.

    Returns
    -------
    context : Tensor
        ``(B, H, L, e)``.
    gates : Tensor
        ``(B, H, L, L)``; row ``i`` is the gate when ``i`` is masked.
    """
    scores = q_mask @ k.transpose(-1, -2)  # (B, H, L, L), off-diagonal entries exact
    diag = (q_mask * k_mask).sum(-1)  # (B, H, L): the masked location's own score
    eye = torch.eye(scores.shape[-1], dtype=torch.bool, device=scores.device)
    scores = torch.where(eye, diag.unsqueeze(-1), scores)
    gates = _scores_to_gates(scores, key_mask, top_k, window)
    own = torch.diagonal(gates, dim1=-2, dim2=-1)  # (B, H, L)
    off_diagonal = gates.masked_fill(eye, 0.0)
    context = off_diagonal @ v + own.unsqueeze(-1) * v_mask
    return context, gates


def mask_locations(x: Tensor, positions: Tensor, mask_id: int) -> Tensor:
    """Copies of ``x`` with one location masked each.

    Parameters
    ----------
    x
        ``(B, L)`` codes (integer or floating); a masked cell becomes ``mask_id``.
    positions
        ``(B, P)`` locations to mask.

    Returns
    -------
    Tensor
        ``(B * P, L)``; copy ``b * P + p`` has ``positions[b, p]`` masked.
    """
    batch, n_pos = positions.shape
    copies = x.repeat_interleave(n_pos, dim=0)  # (B*P, L)
    rows = torch.arange(batch * n_pos, device=x.device)
    copies[rows, positions.reshape(-1)] = mask_id
    return copies


def as_positions(positions: Tensor | int | None, x: Tensor) -> Tensor:
    """Normalize a ``positions`` argument to a ``(B, P)`` long tensor."""
    batch, length = x.shape
    if positions is None:
        return torch.arange(length, device=x.device).expand(batch, length)
    positions = torch.as_tensor(positions, device=x.device, dtype=torch.long)
    if positions.ndim == 0:
        positions = positions.expand(batch, 1)
    elif positions.ndim == 1:
        positions = positions.expand(batch, -1)
    if positions.shape[0] != batch or positions.ndim != 2:
        raise ValueError(
            f"positions must be int, (P,) or (B, P); got shape {tuple(positions.shape)}"
        )
    if positions.numel() and (positions.min() < 0 or positions.max() >= length):
        raise ValueError(f"positions must lie in [0, {length}); got {positions.tolist()}")
    return positions
