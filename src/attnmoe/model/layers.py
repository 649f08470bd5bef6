"""Building blocks used by both model forms: the bert link and the output layer."""

from __future__ import annotations

from torch import Tensor, nn

from .config import AttentionConfig


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
