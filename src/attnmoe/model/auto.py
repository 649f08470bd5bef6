"""Load any saved model form: the registry from ``model_type`` to its class.

Hugging Face's ``auto`` pattern: the modeling files do not import this module,
so it may import all of them.
"""

from __future__ import annotations

import os

from .attention import BidirectionalAttention
from .base import MaskedWordModel
from .cbow import CBOW
from .experts import ContinuousWordExperts
from .io import ModelFileError, model_type_of

#: saved ``model_type`` -> the class that reads it
MODEL_CLASSES: dict[str, type[MaskedWordModel]] = {
    cls.__name__: cls for cls in (BidirectionalAttention, ContinuousWordExperts, CBOW)
}


def load_model(directory: str | os.PathLike) -> MaskedWordModel:
    """Load any attnmoe model from a directory, whatever its form."""
    kind = model_type_of(directory)
    if kind not in MODEL_CLASSES:
        raise ModelFileError(f"{directory}: unknown model_type {kind!r}")
    return MODEL_CLASSES[kind].from_pretrained(directory)
