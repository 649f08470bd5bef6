"""attnmoe: bidirectional attention as a mixture of continuous word experts."""

__version__ = "0.1.0"

from .model import (  # noqa: E402  (version first: model.io reads it)
    CBOW,
    AttentionConfig,
    BidirectionalAttention,
    ContinuousWordExperts,
    ModelFileError,
    load_model,
)

__all__ = [
    "CBOW",
    "AttentionConfig",
    "BidirectionalAttention",
    "ContinuousWordExperts",
    "ModelFileError",
    "__version__",
    "load_model",
]
