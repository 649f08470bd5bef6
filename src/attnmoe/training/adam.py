"""Adam as the paper's Keras code ran it, on top of ``torch.optim.Adam``."""

from __future__ import annotations

import math

import torch

#: Keras's default Adam epsilon (torch's is 1e-8)
KERAS_ADAM_EPS = 1e-7


class KerasEpsilon:
    """``torch.optim.Adam`` stepping as Keras's Adam: epsilon on the uncorrected sqrt(v).

    torch divides by ``sqrt(v_t / (1 - beta2^t)) + eps``, Keras (with the same
    bias-corrected step size) by ``(sqrt(v_t) + eps) / sqrt(1 - beta2^t)``: the same
    update when torch's epsilon at step ``t`` is ``eps / sqrt(1 - beta2^t)``.
    """

    def __init__(self, optimizer: torch.optim.Adam) -> None:
        self.optimizer = optimizer
        self.eps = [group["eps"] for group in optimizer.param_groups]
        self.steps = 0

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.steps += 1
        for group, eps in zip(self.optimizer.param_groups, self.eps, strict=True):
            group["eps"] = eps / math.sqrt(1.0 - group["betas"][1] ** self.steps)
        self.optimizer.step()
