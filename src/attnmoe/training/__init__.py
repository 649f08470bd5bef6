"""Masked-language-model training: the engines, the distributed trainer, checkpoints.

:func:`train_mlm` (:mod:`.mlm`) fits a model in this process with one of the
steppers of :mod:`.steppers` (torch: masked copies, all locations in one pass,
random masking; or the compiled :mod:`.fused` engine); :mod:`.options` checks
the options for it, the distributed trainer (:mod:`.distributed`) and the
tabular estimators alike. Imports :mod:`attnmoe.model`, never the other way.
"""

from .losses import hide_context, masked_copies_loss, mlm_loss, random_mask_loss
from .mlm import TrainingHistory, evaluate_mlm, train_mlm
from .threads import torch_threads

__all__ = [
    "TrainingHistory",
    "evaluate_mlm",
    "hide_context",
    "masked_copies_loss",
    "mlm_loss",
    "random_mask_loss",
    "torch_threads",
    "train_mlm",
]
