"""Numerical checks that the attention and experts forms are the same model."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .attention import BidirectionalAttention
from .config import AttentionConfig


def random_attention_model(
    config: AttentionConfig, seed: int = 0, std: float = 0.5, dtype: torch.dtype = torch.float64
) -> BidirectionalAttention:
    """An attention model with every parameter (biases and LayerNorms included) ~ N(0, std^2)."""
    generator = torch.Generator().manual_seed(seed)
    model = BidirectionalAttention(config).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=dtype) * std)
    return model


@dataclass
class EquivalenceCase:
    """Largest absolute difference between the forms' masked log-probabilities."""

    block: str
    n_heads: int
    n_layers: int
    experts_vs_attention: float
    round_trip_vs_attention: float
    one_pass_vs_copies: float | None

    @property
    def worst(self) -> float:
        values = [self.experts_vs_attention, self.round_trip_vs_attention]
        return max(
            values + ([self.one_pass_vs_copies] if self.one_pass_vs_copies is not None else [])
        )


@torch.no_grad()
def compare_forms(model: BidirectionalAttention, x: torch.Tensor) -> EquivalenceCase:
    """Compare masked log-probs of ``model``, its experts form and the round trip back."""
    reference = model.masked_log_probs(x, method="copies")
    experts = model.to_experts()
    one_pass = None
    if model.config.one_pass_exact:
        one_pass = float((model.masked_log_probs(x, method="one_pass") - reference).abs().max())
    cfg = model.config
    return EquivalenceCase(
        block=cfg.block,
        n_heads=cfg.n_heads,
        n_layers=cfg.n_layers,
        experts_vs_attention=float((experts.masked_log_probs(x) - reference).abs().max()),
        round_trip_vs_attention=float(
            (experts.to_attention().masked_log_probs(x) - reference).abs().max()
        ),
        one_pass_vs_copies=one_pass,
    )


def check_equivalence(
    n_heads: tuple[int, ...] = (1, 2, 4),
    n_layers: tuple[int, ...] = (1, 2, 3),
    blocks: tuple[str, ...] = ("pure", "bert"),
    vocab_size: int = 20,
    length: int = 8,
    d_head: int = 3,
    batch: int = 4,
    dtype: torch.dtype = torch.float64,
    std: float = 0.5,
    seed: int = 0,
) -> list[EquivalenceCase]:
    """Random models over a grid of configurations, each compared in both forms.

    The grid is every combination of ``blocks``, ``n_heads`` and ``n_layers``
    (the :class:`AttentionConfig` fields, one list of values each).
    """
    cases = []
    for k, (block, h, n) in enumerate(itertools.product(blocks, n_heads, n_layers)):
        config = AttentionConfig(
            vocab_size=vocab_size,
            max_len=length,
            d_model=h * d_head,
            n_heads=h,
            n_layers=n,
            block=block,
            d_ff=2 * h * d_head,
        )
        model = random_attention_model(config, seed=seed + k, std=std, dtype=dtype)
        gen = torch.Generator().manual_seed(seed + k)
        x = torch.randint(0, vocab_size, (batch, length), generator=gen)
        cases.append(compare_forms(model, x))
    return cases
