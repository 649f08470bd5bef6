"""Bidirectional attention: self-attention + positional embeddings + MLM.

Section 1 of the paper: to predict location ``i`` its input is the mask token,
every other location keeps its word, and ``p(x_i | x_-i)`` is a softmax over
``rho_w . o_i + b_w``. ``to_experts()`` gives the same model as a continuous
bag of words whose context weights come from a mixture of experts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import MaskedWordModel
from .config import AttentionConfig
from .functional import lookup_codes, mix_experts, mix_experts_one_pass
from .layers import LayerOutput, stacked_layers


class MultiHeadSelfAttention(nn.Module):
    """Q/K/V projections into ``H`` heads and the output projection ``W_O``."""

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        d, h, dh = config.d_model, config.n_heads, config.d_head
        self.n_heads, self.d_head = h, dh
        self.query = nn.Linear(d, h * dh, bias=config.bias)
        self.key = nn.Linear(d, h * dh, bias=config.bias)
        self.value = nn.Linear(d, h * dh, bias=config.bias)
        self.out = nn.Linear(h * dh, d, bias=config.bias)

    def split_heads(self, t: Tensor) -> Tensor:
        # (B, L, H*dh) -> (B, H, L, dh)
        b, length, _ = t.shape
        return t.view(b, length, self.n_heads, self.d_head).transpose(1, 2)

    def project(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Scaled queries, keys and values, each ``(B, H, L, dh)``."""
        scale = 1.0 / math.sqrt(self.d_head)
        return (self.split_heads(self.query(h)) * scale, *self.keys_values(h))

    def keys_values(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values only, each ``(B, H, L, dh)``."""
        return self.split_heads(self.key(h)), self.split_heads(self.value(h))

    def merge(self, context: Tensor) -> Tensor:
        # (B, H, L, dh) -> (B, L, H*dh) -> W_O -> (B, L, d)
        b, _, length, _ = context.shape
        return self.out(context.transpose(1, 2).reshape(b, length, -1))


class AttentionLayer(nn.Module):
    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(config)
        self.output = LayerOutput(config)
        self.sparsity = {"top_k": config.top_k, "window": config.window}

    def forward(self, h: Tensor, key_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q, k, v = self.attention.project(h)
        context, gates = mix_experts(q, k, v, key_mask, **self.sparsity)
        return self.output(h, self.attention.merge(context)), gates

    def forward_one_pass(
        self, h: Tensor, h_mask: Tensor, key_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Row ``i`` of the result is this layer's output at ``i`` with ``i`` masked.

        ``h``: inputs with real words ``(B, L, d)``; ``h_mask``: the mask token's
        input at each location ``(1, L, d)``.
        """
        k, v = self.attention.keys_values(h)  # queries come from the mask rows only
        q_mask, k_mask, v_mask = self.attention.project(h_mask)
        context, gates = mix_experts_one_pass(
            q_mask, k, k_mask, v, v_mask, key_mask, **self.sparsity
        )
        return self.output(h_mask, self.attention.merge(context)), gates


class BidirectionalAttention(MaskedWordModel):
    """Bidirectional self-attention language model trained by masked-word prediction.

    Parameters
    ----------
    config
        Sizes and block form; see :class:`AttentionConfig`.

    Examples
    --------
    >>> import torch
    >>> from attnmoe import AttentionConfig, BidirectionalAttention
    >>> model = BidirectionalAttention(AttentionConfig(vocab_size=10, max_len=5))
    >>> x = torch.randint(0, 10, (2, 5))
    >>> model.masked_log_probs(x, positions=[0, 3]).shape
    torch.Size([2, 2, 10])
    """

    config_class = AttentionConfig

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size + 1, config.d_model)  # E (+ mask)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)  # P
        self.layers = stacked_layers(lambda: AttentionLayer(config), config.n_layers)
        self.output = nn.Linear(config.d_model, config.vocab_size)  # rho, b

    # -- inputs ---------------------------------------------------------------
    def embed(self, x: Tensor) -> Tensor:
        # (B, L) -> (B, L, d): E[x_j] + P[j]; a fractional code interpolates E
        positions = torch.arange(x.shape[1], device=x.device)
        return lookup_codes(self.token_embedding, x) + self.position_embedding(positions)

    def embed_mask(self, length: int) -> Tensor:
        # (1, L, d): E[m] + P[j] for every location j
        positions = torch.arange(length, device=self.output.weight.device)
        mask = self.token_embedding.weight[self.config.mask_id]
        return (mask + self.position_embedding(positions)).unsqueeze(0)

    # -- forward paths ----------------------------------------------------------
    def hidden_states(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        h = self.embed(x)
        for layer in self.layers:
            h, _ = layer(h, key_mask)
        return h

    def one_pass_hidden_states(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        h, _ = self.layers[0].forward_one_pass(self.embed(x), self.embed_mask(x.shape[1]), key_mask)
        return h

    def attention_weights(self, x: Tensor, key_mask: Tensor | None = None) -> list[Tensor]:
        """Per-layer attention matrices ``(B, H, L, L)`` of an already-masked input."""
        self.check_input(x)
        h, weights = self.embed(x), []
        for layer in self.layers:
            h, gates = layer(h, key_mask)
            weights.append(gates)
        return weights

    # -- conversion -------------------------------------------------------------
    def to_experts(self) -> MaskedWordModel:
        """The same model as a :class:`ContinuousWordExperts` (exact)."""
        # looked up, not imported: the experts module imports this one
        return self.forms["ContinuousWordExperts"].from_attention(self)
