"""Continuous word experts: the CBOW mixture-of-experts form of bidirectional attention.

Section 2 of the paper. For one head and one layer,

    p(x_i = w | x_-i) = softmax_w( rho_w . sum_j pi_ij alpha_j(x_j) + b_w )
    pi_ij = softmax_j( q(i, m) . k(j, x_j) )

Every word location ``j`` is an expert whose "continuous word" ``alpha_j(w)`` is
a free table over (location, word); the gate scores a (masked location, word,
location) triple through per-(location, word) query and key tables of rank
``r``. Attention is the special case where these tables are affine in
``E[w] + P[j]`` (``alpha`` factors through ``W_O W_V``, the gate is bilinear of
rank ``<= d_k``). ``H`` heads are ``H`` summed MoEs; deeper layers are MoEs
whose experts are the previous layer's MoE outputs (a mixture of MoEs).

A fractional code ``c`` (``lo = floor(c)``, ``t = c - lo``; see
:mod:`attnmoe.model.functional`) is a continuous word in the literal sense: every
first-layer table is read as ``(1 - t) table[j, lo] + t table[j, lo + 1]``, which
is the table of the interpolated input ``(1 - t) E[lo] + t E[lo + 1] + P[j]``
because each table is affine in that input. The conversions are therefore exact
for fractional codes too.

Table shapes: H heads, L locations, V+1 words (mask last), r = d_head, d = d_model.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from .attention import BidirectionalAttention
from .base import MaskedWordModel
from .config import AttentionConfig
from .functional import lookup_codes, mask_locations, mix_experts, mix_experts_one_pass
from .layers import LayerOutput, stacked_layers

_INIT_STD = 0.1


def _table(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * _INIT_STD)


class WordExpertLayer(nn.Module):
    """First layer: gates and experts looked up per (location, word)."""

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        h, length, words, r, d = (
            config.n_heads,
            config.max_len,
            config.vocab_size + 1,
            config.d_head,
            config.d_model,
        )
        self.mask_id = config.mask_id
        self.gate_query = _table(h, length, words, r)  # q(j, w), scaled by 1/sqrt(d_k)
        self.gate_key = _table(h, length, words, r)  # k(j, w)
        self.experts = _table(h, length, words, d)  # alpha_j(w)
        self.context_bias = nn.Parameter(torch.zeros(d))
        # bert form: the residual path carries the input E[w] + P[j] itself
        self.residual = _table(length, words, d) if config.block == "bert" else None
        self.output = LayerOutput(config)
        self.sparsity = {"top_k": config.top_k, "window": config.window}

    @staticmethod
    def lookup(table: Tensor, x: Tensor) -> Tensor:
        # table (H, L, V+1, e), x (B, L) -> (B, H, L, e). A fractional code takes
        # (1 - t) table[j, lo] + t table[j, lo + 1]: exact, since every table here is
        # an affine function of the input embedding E[w] + P[j] and the weights sum to 1
        locations = torch.arange(x.shape[1], device=x.device)
        rows = lookup_codes(lambda ids: table[:, locations, ids], x)  # (H, B, L, e)
        return rows.permute(1, 0, 2, 3)

    def lookup_mask(self, table: Tensor, length: int) -> Tensor:
        # (H, L, V+1, e) -> (1, H, L, e): the mask token's entry at each location
        return table[:, :length, self.mask_id].unsqueeze(0)

    def residual_input(self, x: Tensor) -> Tensor | None:
        if self.residual is None:
            return None
        locations = torch.arange(x.shape[1], device=x.device)
        return lookup_codes(lambda ids: self.residual[locations, ids], x)  # (B, L, d)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q, k, v = (self.lookup(t, x) for t in (self.gate_query, self.gate_key, self.experts))
        context, gates = mix_experts(q, k, v, key_mask, **self.sparsity)  # (B,H,L,d), (B,H,L,L)
        context = context.sum(1) + self.context_bias  # sum of H MoEs: (B, L, d)
        return self.output(self.residual_input(x), context), gates

    def forward_one_pass(self, x: Tensor, key_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        length = x.shape[1]
        k, v = self.lookup(self.gate_key, x), self.lookup(self.experts, x)
        q_mask, k_mask, v_mask = (
            self.lookup_mask(t, length) for t in (self.gate_query, self.gate_key, self.experts)
        )
        context, gates = mix_experts_one_pass(
            q_mask, k, k_mask, v, v_mask, key_mask, **self.sparsity
        )
        context = context.sum(1) + self.context_bias
        residual = None if self.residual is None else self.residual[:length, self.mask_id]
        return self.output(residual, context), gates


class ContextExpertLayer(nn.Module):
    """Layer ``l >= 2``: an MoE whose experts are linear maps of layer ``l-1``'s outputs.

    Gate ``g_ij = h_i^T G h_j + u . h_j`` (terms in ``i`` alone cancel in the
    softmax); expert ``alpha_j = M h_j + c``.
    """

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        h, d = config.n_heads, config.d_model
        self.gate_bilinear = _table(h, d, d)  # G
        self.gate_linear = nn.Parameter(torch.zeros(h, d))  # u
        self.expert_map = _table(h, d, d)  # M: alpha = M h (+ c)
        self.expert_bias = nn.Parameter(torch.zeros(h, d))  # c
        self.context_bias = nn.Parameter(torch.zeros(d))
        self.output = LayerOutput(config)
        self.sparsity = {"top_k": config.top_k, "window": config.window}

    def experts_of(self, h: Tensor) -> Tensor:
        # (B, L, d) -> (B, H, L, d)
        return torch.einsum("hed,bld->bhle", self.expert_map, h) + self.expert_bias[:, None]

    def forward(self, h: Tensor, key_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q = torch.einsum("bld,hde->bhle", h, self.gate_bilinear) + self.gate_linear[:, None]
        k = h.unsqueeze(1)  # (B, 1, L, d), shared by the heads
        context, gates = mix_experts(q, k, self.experts_of(h), key_mask, **self.sparsity)
        context = context.sum(1) + self.context_bias
        return self.output(h, context), gates


class ContinuousWordExperts(MaskedWordModel):
    """Bidirectional attention written as a CBOW mixture of continuous word experts.

    Parameters
    ----------
    config
        The same :class:`AttentionConfig` as the attention form. Experts and
        gates are initialised at random (a general CBOW-MoE); use
        :meth:`from_attention` for the exact image of an attention model.

    Notes
    -----
    The word layer stores ``(H, L, V+1, .)`` tables, so memory grows with
    ``L * V``: convenient for tables and inspection, heavy for large vocabularies.
    """

    config_class = AttentionConfig

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        self.config = config
        self.word_layer = WordExpertLayer(config)
        self.context_layers = stacked_layers(
            lambda: ContextExpertLayer(config), config.n_layers - 1
        )
        self.output = nn.Linear(config.d_model, config.vocab_size)  # rho, b

    # -- forward paths ----------------------------------------------------------
    def hidden_states(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        return self._run_layers(x, key_mask)[0]

    def one_pass_hidden_states(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        return self.word_layer.forward_one_pass(x, key_mask)[0]

    def _run_layers(self, x: Tensor, key_mask: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        h, gates = self.word_layer(x, key_mask)
        all_gates = [gates]
        for layer in self.context_layers:
            h, gates = layer(h, key_mask)
            all_gates.append(gates)
        return h, all_gates

    # -- looking at the experts -------------------------------------------------
    def masked_copy(self, x: Tensor, i: int) -> Tensor:
        """``x`` with location ``i`` replaced by the mask token: ``(B, L)``."""
        self.check_input(x)
        if not 0 <= i < x.shape[1]:
            raise ValueError(f"location {i} outside [0, {x.shape[1]})")
        positions = torch.full((x.shape[0], 1), i, dtype=torch.long, device=x.device)
        return mask_locations(x, positions, self.config.mask_id)

    def last_layer_input(self, x: Tensor, i: int, key_mask: Tensor | None = None) -> Tensor:
        """The masked-copy forward up to the last layer: hidden states ``(B, L, d)`` entering
        the final context layer when location ``i`` is masked (models of two or more layers)."""
        h, _ = self.word_layer(self.masked_copy(x, i), key_mask)
        for layer in self.context_layers[:-1]:
            h, _ = layer(h, key_mask)
        return h

    def gate_matrices(self, x: Tensor, i: int, key_mask: Tensor | None = None) -> list[Tensor]:
        """Every layer's gates ``(B, H, L, L)`` with location ``i`` masked."""
        return self._run_layers(self.masked_copy(x, i), key_mask)[1]

    def gates(self, x: Tensor, i: int, key_mask: Tensor | None = None) -> Tensor:
        """Final-layer gate ``pi_i.`` behind the prediction at masked ``i``: ``(B, H, L)``."""
        return self.gate_matrices(x, i, key_mask)[-1][:, :, i]

    def experts(self, x: Tensor, i: int | None = None) -> Tensor:
        """Word-layer experts ``alpha^h_j(x_j)``: ``(B, H, L, d)``; ``i`` masked if given."""
        if i is None:
            self.check_input(x)
        else:
            x = self.masked_copy(x, i)
        return self.word_layer.lookup(self.word_layer.experts, x)

    def effective_gates(self, x: Tensor, i: int, key_mask: Tensor | None = None) -> Tensor:
        """Pure form: the layers' gates composed into one gate per head path.

        Without residuals a stack of attention layers is linear in the word
        experts given its gates, so the prediction at ``i`` is one MoE over
        (head path, location) pairs with weights ``(pi^N ... pi^1)_{i j}``.

        Returns
        -------
        Tensor
            ``(B, H ** n_layers, L)``; path index ``p`` enumerates heads
            ``(h_N, ..., h_1)`` from the last layer to the first, row-major. Each
            path's weights over ``j`` sum to one.
        """
        if self.config.block != "pure":
            raise ValueError("effective gates exist for the pure form (no residual/LayerNorm)")
        matrices = self.gate_matrices(x, i, key_mask)
        weights = matrices[-1][:, :, i]  # (B, H, L)
        for gates in reversed(matrices[:-1]):
            b, _paths, _ = weights.shape
            weights = torch.einsum("bpk,bhkj->bphj", weights, gates).reshape(b, -1, gates.shape[-1])
        return weights

    def effective_experts(self, x: Tensor, i: int) -> tuple[Tensor, Tensor]:
        """Pure form: experts per head path and the constant that completes the MoE.

        Returns
        -------
        experts : Tensor
            ``(B, H ** n_layers, L, d)``: ``M^{N,h_N} ... M^{2,h_2} alpha^{h_1}_j(x_j)``.
        constant : Tensor
            ``(d,)``; the final hidden state at ``i`` equals
            ``einsum('bpl,bpld->bd', effective_gates, experts) + constant``.
        """
        if self.config.block != "pure":
            raise ValueError("effective experts exist for the pure form (no residual/LayerNorm)")
        experts = self.experts(x, i)  # (B, H, L, d)
        constant = self.word_layer.context_bias
        for layer in self.context_layers:
            b, _paths, length, d = experts.shape
            # new path (h_l, old path): apply M^{l, h_l}
            experts = torch.einsum("hed,bpld->bhple", layer.expert_map, experts)
            experts = experts.reshape(b, -1, length, d)
            constant = (
                torch.einsum("hed,d->e", layer.expert_map, constant)
                + layer.expert_bias.sum(0)
                + layer.context_bias
            )
        return experts, constant

    def contributions(self, x: Tensor, i: int, key_mask: Tensor | None = None) -> Tensor:
        """Each expert's share ``pi_ij alpha_j`` of the final context vector at masked ``i``.

        The final layer's context (the vector the output layer sees in the pure
        form, the input of the link in the bert form) is exactly
        ``contributions(x, i).sum((1, 2)) + bias``, with ``bias`` the final
        layer's ``context_bias`` (one layer or bert form) or the constant of
        :meth:`effective_experts` (deeper pure models).

        Parameters
        ----------
        x
            ``(B, L)`` token ids; location ``i`` is masked here.
        i
            The predicted (masked) location.
        key_mask
            ``(B, L)`` bool, False at padding.

        Returns
        -------
        Tensor
            ``(B, P, L, d)`` where ``P`` is ``H`` for one layer and for the bert
            form (the final layer's heads; its experts are ``M^h h_j + c^h`` of
            the previous layer's states), and ``H ** n_layers`` head paths for
            deeper pure models (path order as :meth:`effective_gates`).
        """
        if self.config.n_layers == 1:
            gates = self.gates(x, i, key_mask)
            return gates.unsqueeze(-1) * self.experts(x, i)
        if self.config.block == "pure":
            # the unrolled stack is one MoE per head path: exact and additive
            experts, _constant = self.effective_experts(x, i)
            return self.effective_gates(x, i, key_mask).unsqueeze(-1) * experts
        # bert: the final layer mixes experts of the previous layer's states
        h = self.last_layer_input(x, i, key_mask)
        last = self.context_layers[-1]
        q = torch.einsum("bld,hde->bhle", h, last.gate_bilinear) + last.gate_linear[:, None]
        _, gates = mix_experts(q, h.unsqueeze(1), last.experts_of(h), key_mask, **last.sparsity)
        return gates[:, :, i].unsqueeze(-1) * last.experts_of(h)

    # -- conversions --------------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def from_attention(cls, model: BidirectionalAttention) -> ContinuousWordExperts:
        """The exact CBOW-MoE image of a :class:`BidirectionalAttention` model."""
        cfg = model.config
        h, r, d = cfg.n_heads, cfg.d_head, cfg.d_model
        ref = model.output.weight
        experts = cls(copy.deepcopy(cfg)).to(dtype=ref.dtype, device=ref.device)
        scale = 1.0 / math.sqrt(r)

        # word layer: evaluate the first layer's projections on every (location, word)
        first = model.layers[0].attention
        e = model.token_embedding.weight[None] + model.position_embedding.weight[:, None]
        # e: (L, V+1, d) = E[w] + P[j]

        def per_head(t: Tensor, width: int) -> Tensor:  # (L, V+1, H*width) -> (H, L, V+1, width)
            return t.view(*t.shape[:2], h, width).permute(2, 0, 1, 3)

        w_o = first.out.weight.view(d, h, r)  # W_O = [W_O^1 .. W_O^H]
        values = per_head(first.value(e), r)  # W_V e + b_V
        word = experts.word_layer
        word.gate_query.copy_(per_head(first.query(e), r) * scale)
        # key bias dropped: q_i . b_K depends on i alone and cancels in the softmax
        word.gate_key.copy_(per_head(e @ first.key.weight.T, r))
        word.experts.copy_(torch.einsum("hlwk,dhk->hlwd", values, w_o))
        word.context_bias.copy_(_bias(first.out, d))
        if word.residual is not None:
            word.residual.copy_(e)
        word.output.load_state_dict(model.layers[0].output.state_dict())

        for target, source in zip(experts.context_layers, model.layers[1:], strict=True):
            att = source.attention
            w_q, w_k, w_v = (p.weight.view(h, r, d) for p in (att.query, att.key, att.value))
            b_q, b_v = _bias(att.query, h * r).view(h, r), _bias(att.value, h * r).view(h, r)
            w_o = att.out.weight.view(d, h, r)
            target.gate_bilinear.copy_(torch.einsum("hkd,hke->hde", w_q, w_k) * scale)
            target.gate_linear.copy_(torch.einsum("hkd,hk->hd", w_k, b_q) * scale)
            target.expert_map.copy_(torch.einsum("dhk,hke->hde", w_o, w_v))
            target.expert_bias.copy_(torch.einsum("dhk,hk->hd", w_o, b_v))
            target.context_bias.copy_(_bias(att.out, d))
            target.output.load_state_dict(source.output.state_dict())

        experts.output.load_state_dict(model.output.state_dict())
        return experts.train(model.training)

    @torch.no_grad()
    def to_attention(self, tol: float | None = None) -> BidirectionalAttention:
        """Factor the experts and gates back into attention weights.

        Possible when the tables have attention's low-rank structure, as every
        model made by :meth:`from_attention` has. Raises ``ValueError`` otherwise.
        The result makes the same predictions; its weights are one of many
        equivalent choices (bases of ``W_Q``/``W_K`` and ``W_O``/``W_V`` are free,
        value biases move into ``b_O``, ``P[0] = 0``).

        Parameters
        ----------
        tol
            Relative tolerance of the structure checks; defaults by dtype.
        """
        cfg = self.config
        h, r, d, length = cfg.n_heads, cfg.d_head, cfg.d_model, cfg.max_len
        words = cfg.vocab_size + 1
        ref = self.output.weight
        if tol is None:  # the structure holds to the weights' own rounding
            tol = {torch.float64: 1e-7, torch.float32: 1e-4}.get(ref.dtype, 1e-2)
        if ref.dtype != torch.float64:
            # factorizations (SVD, least squares) in float64; the result keeps our dtype
            wide = copy.deepcopy(self).double()
            return wide.to_attention(tol).to(ref.dtype)
        model = BidirectionalAttention(copy.deepcopy(cfg)).to(dtype=ref.dtype, device=ref.device)
        scale = 1.0 / math.sqrt(r)
        word = self.word_layer

        def flat(t: Tensor) -> Tensor:  # (H, L, V+1, e) -> (L, V+1, H*e)
            return t.permute(1, 2, 0, 3).reshape(length, words, -1)

        tables = torch.cat([flat(word.gate_query), flat(word.gate_key), flat(word.experts)], -1)
        embedding, linear, constant = _affine_embedding(tables, word.residual, d, tol, cfg.bias)
        model.token_embedding.weight.copy_(embedding[0])
        model.position_embedding.weight.copy_(embedding[:, 0] - embedding[0, 0])
        n_q, n_k = h * r, 2 * h * r
        att = model.layers[0].attention
        att.query.weight.copy_(linear[:, :n_q].T / scale)
        att.key.weight.copy_(linear[:, n_q:n_k].T)
        maps = linear[:, n_k:].reshape(d, h, d).permute(1, 2, 0)  # (H, d_out, d_in)
        out_bias = word.context_bias + constant[n_k:].reshape(h, d).sum(0)
        _set_value_output(att, maps, tol)
        if cfg.bias:
            att.query.bias.copy_(constant[:n_q] / scale)
            att.key.bias.copy_(constant[n_q:n_k])
            att.value.bias.zero_()  # value constants moved to b_O: gates sum to one
            att.out.bias.copy_(out_bias)
        elif out_bias.abs().max() > tol:
            raise ValueError("the context bias needs projection biases; config has bias=False")
        model.layers[0].output.load_state_dict(word.output.state_dict())

        for source, target in zip(self.context_layers, model.layers[1:], strict=True):
            att = target.attention
            w_q, w_k, b_q = [], [], []
            for head in range(h):
                a, b = _low_rank(source.gate_bilinear[head] / scale, r, tol, "gate bilinear form")
                u = source.gate_linear[head] / scale  # must equal W_K^T b_Q
                b = _key_rows_spanning(b, u, tol)
                w_q.append(a.T)
                w_k.append(b)
                b_q.append(_solve(b.T, u, tol, "gate linear term"))
            att.query.weight.copy_(torch.cat(w_q))
            att.key.weight.copy_(torch.cat(w_k))
            _set_value_output(att, source.expert_map, tol)
            if cfg.bias:
                att.query.bias.copy_(torch.cat(b_q))
                att.key.bias.zero_()
                att.value.bias.zero_()
                att.out.bias.copy_(source.context_bias + source.expert_bias.sum(0))
            elif (
                max(
                    t.abs().max()
                    for t in (source.gate_linear, source.expert_bias, source.context_bias)
                )
                > tol
            ):
                raise ValueError("the context layers need projection biases; config has bias=False")
            target.output.load_state_dict(source.output.state_dict())

        model.output.load_state_dict(self.output.state_dict())
        return model.train(self.training)


# -- factorization helpers -------------------------------------------------------
def _bias(linear: nn.Linear, size: int) -> Tensor:
    if linear.bias is None:
        return linear.weight.new_zeros(size)
    return linear.bias


def _numerical_rank(s: Tensor, tol: float) -> int:
    return int((s > tol * max(float(s[0]), 1.0)).sum()) if s.numel() else 0


def _low_rank(matrix: Tensor, rank: int, tol: float, what: str) -> tuple[Tensor, Tensor]:
    """``matrix ~= a @ b`` with ``a: (m, rank)``, ``b: (rank, n)``; error if rank is higher.

    Directions beyond the numerical rank are exact zeros, so spare rows of ``b``
    stay free for :func:`_key_rows_spanning`.
    """
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    found = _numerical_rank(s, tol)
    if found > rank:
        raise ValueError(
            f"{what} has rank > {rank} (singular value {float(s[rank]):.3g}): "
            "these experts have no attention form of this size"
        )
    root = s[:found].sqrt()
    a = matrix.new_zeros(matrix.shape[0], rank)
    b = matrix.new_zeros(rank, matrix.shape[1])
    a[:, :found] = u[:, :found] * root
    b[:found] = root[:, None] * vh[:found]
    return a, b


def _key_rows_spanning(w_k: Tensor, u: Tensor, tol: float) -> Tensor:
    """Let the key map's rows span ``u`` too, using a spare (all-zero) row if needed.

    The gate's linear term ``u = W_K^T b_Q`` lies in the row space of the true
    ``W_K``, which can be larger than that of ``G = W_Q^T W_K``.
    """
    used = w_k.abs().sum(1) > 0
    residual = u
    if used.any():
        rows = w_k[used]
        coeffs = torch.linalg.lstsq(rows.T, u.unsqueeze(-1)).solution.squeeze(-1)
        residual = u - rows.T @ coeffs
    if float(residual.norm()) <= tol * max(1.0, float(u.norm())):
        return w_k
    spare = (~used).nonzero()
    if not len(spare):
        raise ValueError("gate linear term is not in the span attention can express")
    w_k = w_k.clone()
    w_k[spare[0, 0]] = residual  # W_Q's matching column is zero: G is unchanged
    return w_k


def _solve(a: Tensor, y: Tensor, tol: float, what: str) -> Tensor:
    x = torch.linalg.lstsq(a, y.unsqueeze(-1), rcond=tol, driver="gelsd").solution.squeeze(-1)
    if (a @ x - y).abs().max() > tol * max(1.0, float(y.abs().max())):
        raise ValueError(f"{what} is not in the span attention can express")
    return x


def _set_value_output(att: nn.Module, maps: Tensor, tol: float) -> None:
    """Factor each head's expert map ``M^h = W_O^h W_V^h`` (rank <= d_head)."""
    h, _d, _ = maps.shape
    r = att.d_head
    w_o, w_v = [], []
    for head in range(h):
        a, b = _low_rank(maps[head], r, tol, "expert map W_O W_V")
        w_o.append(a)
        w_v.append(b)
    att.out.weight.copy_(torch.cat(w_o, 1))  # (d, H*r)
    att.value.weight.copy_(torch.cat(w_v, 0))  # (H*r, d)


def _affine_embedding(
    tables: Tensor, residual: Tensor | None, d: int, tol: float, affine: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Write ``tables[j, w] = e[j, w] @ linear + constant`` with ``e = E[w] + P[j]`` in R^d.

    With a residual table (bert form) ``e`` is that table; otherwise ``e`` is
    found from the tables: they must be additive in location and word and span
    at most ``d`` dimensions. ``affine=False`` (no projection biases) forces
    ``constant = 0``.

    Returns
    -------
    embedding : Tensor
        ``(L, V+1, d)``.
    linear : Tensor
        ``(d, D)``.
    constant : Tensor
        ``(D,)``.
    """
    scale = max(1.0, float(tables.abs().max()))

    def check_additive(t: Tensor, what: str) -> None:
        additive = t[0][None] + t[:, 0][:, None] - t[0, 0]
        if (t - additive).abs().max() > tol * max(1.0, float(t.abs().max())):
            raise ValueError(f"{what} is not additive in location and word: no attention form")

    if residual is not None:
        check_additive(residual, "the residual input table")
        e = residual.reshape(-1, d)
        design = torch.cat([e, e.new_ones(e.shape[0], 1)], 1) if affine else e
        # truncated (rcond) least squares: embeddings that do not span R^d leave
        # directions free; the minimum-norm solution keeps the maps' rank
        targets = tables.reshape(e.shape[0], -1)
        solution = torch.linalg.lstsq(design, targets, rcond=tol, driver="gelsd").solution
        linear = solution[:d]
        constant = solution[d] if affine else solution.new_zeros(solution.shape[1])
        embedding = residual
    else:
        check_additive(tables, "the gate and expert tables")
        constant = tables[0, 0] if affine else tables.new_zeros(tables.shape[-1])
        rows = torch.cat([tables[0] - constant, tables[1:, 0] - tables[0, 0]])  # (V+L, D)
        _, s, vh = torch.linalg.svd(rows, full_matrices=False)
        if s.numel() > d and s[d] > tol * max(float(s[0]), 1.0):
            raise ValueError(f"the tables span more than d_model={d} dimensions: no attention form")
        rank = _numerical_rank(s, tol)
        basis = vh[:rank]  # (rank <= d, D), orthonormal rows; null directions left out
        if basis.shape[0] < d:
            basis = torch.cat([basis, basis.new_zeros(d - basis.shape[0], basis.shape[1])])
        words_part = (tables[0] - constant) @ basis.T  # E[w] (with P[0] = 0)
        locations_part = (tables[:, 0] - tables[0, 0]) @ basis.T  # P[j]
        embedding = words_part[None] + locations_part[:, None]
        linear = basis
    rebuilt = embedding.reshape(-1, d) @ linear + constant
    if (rebuilt - tables.reshape(rebuilt.shape)).abs().max() > tol * scale:
        raise ValueError("the gate and expert tables are not affine in a d_model-dim embedding")
    return embedding, linear, constant
