"""What every masked-word model shares: input checks and the masking paths."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from .config import AttentionConfig
from .functional import CODE_DTYPES, as_positions, check_codes, mask_locations
from .io import PretrainedMixin

MaskingMethod = Literal["auto", "one_pass", "copies"]


class MaskedWordModel(PretrainedMixin, nn.Module):
    """Base of the model forms: ``p(x_i = w | x_-i)`` for masked locations.

    Subclasses provide :meth:`hidden_states` (an already-masked input) and
    :meth:`one_pass_hidden_states` (row ``i`` = location ``i`` masked alone).
    """

    config: AttentionConfig
    output: nn.Linear  # rho (V x d) and b (V)

    #: every model form by class name, filled as each form's class is defined: one form
    #: converts to another through it without importing the other's module (no circle)
    forms: ClassVar[dict[str, type[MaskedWordModel]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        MaskedWordModel.forms.setdefault(cls.__name__, cls)

    @property
    def one_pass_exact(self) -> bool:
        return self.config.one_pass_exact

    def check_input(self, x: Tensor) -> None:
        """Refuse anything but a ``(B, L)`` codes matrix (integer word ids, or floating
        codes: :func:`~attnmoe.model.functional.check_codes`) no longer than ``max_len``."""
        if x.ndim != 2:
            raise ValueError(f"x must be (batch, length) token ids, got shape {tuple(x.shape)}")
        if x.dtype not in (torch.int64, torch.int32, *CODE_DTYPES):
            raise TypeError(f"x must hold integer token ids or float32/64 codes, got {x.dtype}")
        if x.shape[1] > self.config.max_len:
            raise ValueError(f"sentence length {x.shape[1]} exceeds max_len={self.config.max_len}")
        check_codes(x, self.config.mask_id)

    def hidden_states(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Final hidden states ``(B, L, d)`` of an input whose masked locations hold the mask id."""
        raise NotImplementedError

    def one_pass_hidden_states(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """``(B, L, d)``: row ``i`` is the hidden state at ``i`` when only ``i`` is masked."""
        raise NotImplementedError

    def logits(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Output logits ``(B, L, V)`` at every location of an already-masked input."""
        self.check_input(x)
        return self.output(self.hidden_states(x, key_mask))

    def masked_logits(
        self,
        x: Tensor,
        positions: Tensor | int | None = None,
        key_mask: Tensor | None = None,
        method: MaskingMethod = "auto",
    ) -> Tensor:
        """Logits for each requested location with that location (alone) masked.

        Parameters
        ----------
        x
            ``(B, L)`` token ids of real words, or floating codes (a fractional code
            interpolates between two words' inputs: :mod:`attnmoe.model.functional`).
        positions
            Locations to predict: int, ``(P,)`` or ``(B, P)``; all when None.
        key_mask
            ``(B, L)`` bool, False at padding.
        method
            ``"one_pass"`` (one L x L pass; exact for one layer), ``"copies"`` (one
            masked copy of the sentence per location) or ``"auto"`` (one pass when
            exact).

        Returns
        -------
        Tensor
            ``(B, P, V)``.
        """
        self.check_input(x)
        pos = as_positions(positions, x)
        if method == "auto":
            method = "one_pass" if self.one_pass_exact else "copies"
        if method == "one_pass":
            if not self.one_pass_exact:
                raise ValueError("one-pass masking is exact only for one-layer models")
            h = self.one_pass_hidden_states(x, key_mask)  # (B, L, d)
            h = torch.gather(h, 1, pos.unsqueeze(-1).expand(-1, -1, h.shape[-1]))  # (B, P, d)
            return self.output(h)
        if method != "copies":
            raise ValueError(f"unknown method {method!r}; use 'auto', 'one_pass' or 'copies'")
        n_pos = pos.shape[1]
        copies = mask_locations(x, pos, self.config.mask_id)  # (B*P, L)
        copy_keys = None if key_mask is None else key_mask.repeat_interleave(n_pos, dim=0)
        h = self.hidden_states(copies, copy_keys)  # (B*P, L, d)
        h = h[torch.arange(h.shape[0], device=x.device), pos.reshape(-1)]  # (B*P, d)
        return self.output(h).view(x.shape[0], n_pos, -1)

    def masked_log_probs(
        self,
        x: Tensor,
        positions: Tensor | int | None = None,
        key_mask: Tensor | None = None,
        method: MaskingMethod = "auto",
    ) -> Tensor:
        """``log p(x_i = . | x_-i)`` for each requested location ``i``: ``(B, P, V)``."""
        return torch.log_softmax(self.masked_logits(x, positions, key_mask, method), dim=-1)
