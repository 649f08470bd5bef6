"""Random models for the model tests."""

from __future__ import annotations

import torch

from attnmoe import AttentionConfig, BidirectionalAttention
from attnmoe.model.equivalence import random_attention_model


def random_attention(
    seed: int, dtype: torch.dtype = torch.float64, std: float = 0.5, **config
) -> BidirectionalAttention:
    """An attention model with every parameter (biases, LayerNorms included) random."""
    return random_attention_model(AttentionConfig(**config), seed=seed, std=std, dtype=dtype)
