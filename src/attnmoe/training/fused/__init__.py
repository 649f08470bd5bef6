"""The fused engine: compiled all-locations MLM training of small one-layer models.

Two paths compute the same loss and gradients (:func:`fused_path` picks one per
model): gates gathered from (location, word) tables for small tables, or computed
from the batch's own tokens, whose cost follows the batch, not the vocabulary.

:mod:`.engine` drives the steps and epochs (tables, workspaces, Adam, threads);
:mod:`.kernels` holds the numba kernels it calls.
"""

from .engine import (
    MAX_FUSED_D_MODEL,
    MAX_TABLE_PATH_PAIRS,
    PATHS,
    DropoutStream,
    FusedAdam,
    FusedMLM,
    fused_mlm_step,
    fused_path,
    fused_refusal,
    fused_supported,
)

__all__ = [
    "MAX_FUSED_D_MODEL",
    "MAX_TABLE_PATH_PAIRS",
    "PATHS",
    "DropoutStream",
    "FusedAdam",
    "FusedMLM",
    "fused_mlm_step",
    "fused_path",
    "fused_refusal",
    "fused_supported",
]
