"""Configuration shared by every model form (plain data, JSON round-trippable)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

BlockForm = Literal["pure", "bert"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _integer(name: str, value: Any, low: int, none: str = "") -> int:
    """``value`` as an int >= ``low`` (numpy integers too, never a bool); else a clear error."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or value < low
    ):
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {none}{kind}, got {value!r}")
    return int(value)


@dataclass
class AttentionConfig:
    """Sizes and form of a bidirectional attention model.

    The same config describes the attention form and its continuous-word-experts
    form: converting between the two keeps it unchanged.

    Parameters
    ----------
    vocab_size
        Number of real words ``V``. Token ids are ``0..V-1``; id ``V`` is the mask
        token ``m`` (``mask_id``). Predictions are over the ``V`` real words.
    max_len
        Number of word locations ``L`` (positional embeddings, experts per head).
    d_model
        Width of embeddings and of the context vectors.
    n_heads
        Heads per layer. Each head is one mixture of experts.
    d_head
        Query/key/value size per head (``d_k``). Defaults to ``d_model // n_heads``.
    n_layers
        Number of attention layers.
    block
        ``"pure"``: attention only (the theory's model). ``"bert"``: residual +
        LayerNorm + position-wise feed-forward after each attention (the paper's
        experiments).
    d_ff
        Hidden width of the bert feed-forward. Defaults to ``4 * d_model``.
    activation
        Feed-forward nonlinearity of the bert block, ``"relu"`` or ``"gelu"``.
    dropout
        Dropout on the attention output and the feed-forward output (bert form)
        or on the attention output (pure form); inactive in ``eval()``.
    bias
        Whether the Q/K/V/O projections carry biases.
    layer_norm_eps
        LayerNorm epsilon of the bert block (the paper's Keras model: 1e-6).
    top_k
        Sparse gating: each prediction keeps only its ``top_k`` largest gate
        weights (renormalised); None or ``>= L`` is dense.
    window
        Experts limited to locations within ``window`` of the predicted one
        (text); None is unlimited.
    """

    vocab_size: int
    max_len: int
    d_model: int = 32
    n_heads: int = 1
    d_head: int | None = None
    n_layers: int = 1
    block: BlockForm = "pure"
    d_ff: int | None = None
    activation: Literal["relu", "gelu"] = "relu"
    dropout: float = 0.0
    bias: bool = True
    layer_norm_eps: float = 1e-6
    top_k: int | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        # sizes may come as numpy integers (a grid over np.arange); stored as int (JSON)
        for name in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers"):
            setattr(self, name, _integer(name, getattr(self, name), low=1))
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "set d_head explicitly"
                )
            self.d_head = self.d_model // self.n_heads
        self.d_head = _integer("d_head", self.d_head, low=1)
        self.d_ff = _integer("d_ff", 4 * self.d_model if self.d_ff is None else self.d_ff, low=1)
        if self.block not in ("pure", "bert"):
            raise ValueError(f"block must be 'pure' or 'bert', got {self.block!r}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        if self.top_k is not None:
            self.top_k = _integer("top_k", self.top_k, low=1, none="None or ")
        if self.window is not None:
            self.window = _integer("window", self.window, low=0, none="None or ")
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        eps = self.layer_norm_eps
        if not _is_number(eps) or not 0.0 < eps < math.inf:
            raise ValueError(f"layer_norm_eps must be a positive number, got {eps!r}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ValueError(f"bias must be True or False, got {self.bias!r}")
        self.bias = bool(self.bias)
        self.dropout, self.layer_norm_eps = float(self.dropout), float(eps)

    @property
    def mask_id(self) -> int:
        """Token id of the mask token (one past the real words)."""
        return self.vocab_size

    @property
    def one_pass_exact(self) -> bool:
        """Whether all L masked predictions can be computed in one L x L pass."""
        return self.n_layers == 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttentionConfig:
        """A config from its :meth:`to_dict` form, every field checked.

        Raises
        ------
        ValueError
            On an unknown or missing field, or a value of the wrong type or range
            (checked before anything is built from it).
        """
        fields = dataclasses.fields(cls)
        unknown = set(data) - {f.name for f in fields}
        if unknown:
            raise ValueError(f"unknown AttentionConfig fields: {sorted(unknown)}")
        required = [f.name for f in fields if f.default is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"missing AttentionConfig fields: {missing}")
        return cls(**data)
