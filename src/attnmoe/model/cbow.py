"""Classical CBOW: the special case with uniform gates and location-free experts.

``p(x_i = w | x_-i) = softmax_w( rho_w . mean_{j != i} alpha(x_j) + b_w )``
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from .base import MaskedWordModel
from .config import AttentionConfig
from .functional import lookup_codes


class CBOW(MaskedWordModel):
    """Continuous bag of words in the same API as the attention and experts forms.

    Uses ``vocab_size``, ``max_len`` and ``d_model`` of the config; heads,
    layers and block form do not apply.
    """

    config_class = AttentionConfig

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        self.config = replace(config, n_heads=1, n_layers=1, block="pure", d_head=None, d_ff=None)
        self.context_vectors = nn.Embedding(config.vocab_size + 1, config.d_model)  # alpha(w)
        self.output = nn.Linear(config.d_model, config.vocab_size)  # rho, b

    @property
    def one_pass_exact(self) -> bool:
        return True

    def hidden_states(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        # The masked word's own vector never enters, so the masked input's value at
        # i does not matter: identical to the one-pass result.
        return self.one_pass_hidden_states(x, key_mask)

    def one_pass_hidden_states(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        alpha = lookup_codes(self.context_vectors, x)  # (B, L, d)
        present = (
            torch.ones(x.shape, dtype=alpha.dtype, device=x.device)
            if key_mask is None
            else key_mask.to(alpha.dtype)
        )
        alpha = alpha * present.unsqueeze(-1)
        total = alpha.sum(1, keepdim=True) - alpha  # sum over j != i: (B, L, d)
        count = (present.sum(1, keepdim=True) - present).clamp_min(1.0)  # (B, L)
        return total / count.unsqueeze(-1)
