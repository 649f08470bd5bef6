"""Building blocks used by both model forms: the bert link and the output layer."""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import Tensor, nn

from .config import AttentionConfig


def _physical_memory() -> int | None:
    """Bytes of RAM of this machine (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def stacked_layers(make: Callable[[], nn.Module], count: int) -> nn.ModuleList:
    """``count`` layers, each ``make()``, built in order (the same weights for a seed).

    Raises
    ------
    MemoryError
        When ``count`` copies of the first layer's weights exceed this machine's RAM:
        said before building the others, which would otherwise run for as long as
        memory lasts (``n_layers`` of 10**13).
    """
    if count < 1:
        return nn.ModuleList()
    first = make()
    need = count * sum(p.numel() * p.element_size() for p in first.parameters())
    have = _physical_memory()
    if have is not None and need > have:
        raise MemoryError(
            f"{count:,} layers need {need / 2**30:,.1f} GiB of weights; "
            f"this machine has {have / 2**30:,.1f} GiB"
        )
    return nn.ModuleList([first, *(make() for _ in range(count - 1))])


class BertLink(nn.Module):
    """Residual + LayerNorm + position-wise feed-forward after an attention layer.

    In the mixture-of-experts reading this is a fixed nonlinear link applied to
    the context vector; the gates and experts are unchanged by it.
    """

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        d, eps = config.d_model, config.layer_norm_eps
        self.attention_norm = nn.LayerNorm(d, eps=eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(d, config.d_ff),
            nn.ReLU() if config.activation == "relu" else nn.GELU(),
            nn.Linear(config.d_ff, d),
        )
        self.output_norm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, residual: Tensor, context: Tensor) -> Tensor:
        # residual, context: (B, L, d) -> (B, L, d)
        h = self.attention_norm(residual + self.dropout(context))
        return self.output_norm(h + self.dropout(self.feed_forward(h)))


class LayerOutput(nn.Module):
    """What follows the mixing in one layer: the bert link, or dropout alone."""

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        self.link = BertLink(config) if config.block == "bert" else None
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, residual: Tensor, context: Tensor) -> Tensor:
        if self.link is None:
            return self.dropout(context)
        return self.link(residual, context)
