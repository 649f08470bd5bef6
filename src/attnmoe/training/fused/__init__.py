"""The fused engine: compiled all-locations MLM training of small one-layer models.

:mod:`.engine` drives the steps and epochs (tables, workspaces, Adam, threads);
:mod:`.kernels` holds the numba kernels it calls.
"""

from .engine import (
    MAX_FUSED_D_MODEL,
    MAX_FUSED_PAIRS,
    MAX_FUSED_TABLE,
    DropoutStream,
    FusedAdam,
    FusedMLM,
    fused_mlm_step,
    fused_refusal,
    fused_supported,
)

__all__ = [
    "MAX_FUSED_D_MODEL",
    "MAX_FUSED_PAIRS",
    "MAX_FUSED_TABLE",
    "DropoutStream",
    "FusedAdam",
    "FusedMLM",
    "fused_mlm_step",
    "fused_refusal",
    "fused_supported",
]
