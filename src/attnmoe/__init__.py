"""attnmoe: bidirectional attention as a mixture of continuous word experts."""

from ._version import __version__
from .model import (
    CBOW,
    AttentionConfig,
    BidirectionalAttention,
    ContinuousWordExperts,
    ModelFileError,
    load_model,
)
from .training import TrainingHistory, evaluate_mlm, mlm_loss, train_mlm

__all__ = [
    "CBOW",
    "AttentionConfig",
    "BidirectionalAttention",
    "ContinuousWordExperts",
    "ModelFileError",
    "TrainingHistory",
    "__version__",
    "evaluate_mlm",
    "load_model",
    "mlm_loss",
    "train_mlm",
]
