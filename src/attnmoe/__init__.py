"""attnmoe: bidirectional attention as a mixture of continuous word experts."""

__version__ = "0.1.0"

from .model import (
    CBOW,
    AttentionConfig,
    BidirectionalAttention,
    ContinuousWordExperts,
    ModelFileError,
    TrainingHistory,
    evaluate_mlm,
    load_model,
    mlm_loss,
    train_mlm,
)

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
