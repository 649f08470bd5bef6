"""The model in its forms: attention, continuous word experts, CBOW; and MLM training."""

from .attention import BidirectionalAttention
from .cbow import CBOW
from .config import AttentionConfig
from .experts import ContinuousWordExperts
from .io import ModelFileError, load_model

__all__ = [
    "CBOW",
    "AttentionConfig",
    "BidirectionalAttention",
    "ContinuousWordExperts",
    "ModelFileError",
    "load_model",
]

from .training import TrainingHistory, evaluate_mlm, mlm_loss, train_mlm

__all__ += ["TrainingHistory", "evaluate_mlm", "mlm_loss", "train_mlm"]
