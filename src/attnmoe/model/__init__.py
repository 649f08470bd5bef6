"""The model in its forms (attention, continuous word experts, CBOW) and its math.

Nothing here trains: :mod:`attnmoe.training` does, importing this package.
:func:`load_model` (:mod:`.auto`) reads any saved form.
"""

from .attention import BidirectionalAttention
from .auto import load_model
from .cbow import CBOW
from .config import AttentionConfig
from .experts import ContinuousWordExperts
from .io import ModelFileError

__all__ = [
    "CBOW",
    "AttentionConfig",
    "BidirectionalAttention",
    "ContinuousWordExperts",
    "ModelFileError",
    "load_model",
]
