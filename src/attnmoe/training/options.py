"""One validation of the training options, shared by :func:`~attnmoe.training.train_mlm`,
:func:`~attnmoe.training.train_mlm_distributed` and the tabular estimators.

Each check raises ``ValueError`` with a message naming the option; callers whose
knob has another name (the estimators' ``validation_fraction``, see ``docs/knobs.md``)
pass the wording of their own requirement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..model.base import MaskedWordModel

Masking = Literal["auto", "all", "copies", "random"]
"""How a step's masked predictions are drawn: ``masking`` of
:func:`~attnmoe.training.train_mlm`; :func:`~attnmoe.training.train_mlm_distributed`
takes all but ``"copies"``."""

ADAM_FLAVOURS = ("torch", "keras")
ENGINES = ("auto", "torch", "fused")


def check_number(
    name: str, value, low: float, high: float = math.inf, closed: bool = False
) -> float:
    """``value`` as a float in ``[low, high)`` (``[low, high]`` if closed); else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not (low <= value <= high if closed else low <= value < high):  # NaN fails too
        bounds = f"[{low:g}, {high:g}{']' if closed else ')'}"
        raise ValueError(f"{name} must be in {bounds}, got {value!r}")
    return float(value)


def check_lr(lr: float) -> None:
    """A positive, finite learning rate (0 would train nothing, silently)."""
    if not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a positive number, got {lr!r}")


#: how the learning rate moves over the epochs (:func:`lr_factor`)
LR_SCHEDULES = ("constant", "linear", "cosine")


def check_lr_schedule(schedule: str) -> None:
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be {_one_of(LR_SCHEDULES)}, got {schedule!r}")


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The share of the learning rate that epoch ``epoch`` (from 0) of ``epochs`` trains
    with: 1 throughout (``"constant"``), or falling from 1 at the first epoch toward 0
    after the last, in a straight line (``"linear"``) or half a cosine (``"cosine"``)."""
    done = epoch / epochs
    if schedule == "linear":
        return 1.0 - done
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * done))
    return 1.0


def check_adam(adam: str) -> None:
    """``"torch"`` or ``"keras"`` (:mod:`attnmoe.training.adam`)."""
    if adam not in ADAM_FLAVOURS:
        raise ValueError(f"adam must be 'torch' or 'keras', got {adam!r}")


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be 'auto', 'torch' or 'fused', got {engine!r}")


def _one_of(values: Sequence[str]) -> str:
    quoted = [repr(v) for v in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def resolve_masking(masking: str, model: MaskedWordModel, allowed: Sequence[str]) -> str:
    """``masking`` with ``"auto"`` resolved (all locations for one layer, else random)."""
    if masking == "auto":
        masking = "all" if model.one_pass_exact else "random"
    if masking not in allowed:
        raise ValueError(f"masking must be {_one_of(['auto', *allowed])}, got {masking!r}")
    return masking


def check_context_mask_rate(rate, copies: bool, needs: str = "masking='copies'") -> float:
    """A rate in ``[0, 1)``; above 0 only with masked copies (``needs`` says how to get them)."""
    rate = check_number("context_mask_rate", rate, 0.0, 1.0)
    check_context_needs_copies(rate, copies, needs)
    return rate


def check_context_needs_copies(rate: float, copies: bool, needs: str = "masking='copies'") -> None:
    """Hiding context (``rate > 0``) needs masked copies (``needs`` says how to get them)."""
    if rate > 0 and not copies:
        raise ValueError(f"context_mask_rate > 0 needs {needs}")


def check_average_last(share, early_stopping: bool, stopping: str = "patience") -> float:
    """A share in ``[0, 1]``; above 0 not with early stopping (``stopping`` names its knob)."""
    share = check_number("average_last", share, 0.0, 1.0, closed=True)
    check_averaging_without_stopping(share, early_stopping, stopping)
    return share


def check_averaging_without_stopping(
    share: float, early_stopping: bool, stopping: str = "patience"
) -> None:
    """Weight averaging (``share > 0``) and early stopping (``stopping`` names its knob)
    exclude each other: one keeps the best epoch's weights, the other the last ones'."""
    if share > 0 and early_stopping:
        raise ValueError(f"average_last > 0 cannot be combined with early stopping ({stopping})")


def check_patience(patience: int | None, has_validation: bool) -> None:
    if patience is not None and (isinstance(patience, bool) or not patience >= 1):
        raise ValueError(f"patience must be None or >= 1 epoch, got {patience!r}")
    if patience is not None and not has_validation:
        raise ValueError("early stopping (patience) needs a validation set")
