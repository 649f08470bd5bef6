"""Load any saved model form: the registry from ``model_type`` to its class.

Hugging Face's ``auto`` pattern: the modeling files do not import this module,
so it may import all of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .attention import BidirectionalAttention
from .base import MaskedWordModel
from .cbow import CBOW
from .experts import ContinuousWordExperts
from .io import CONFIG_NAME, ModelFileError, model_type_of, read_json

#: saved ``model_type`` -> the class that reads it
MODEL_CLASSES: dict[str, type[MaskedWordModel]] = {
    cls.__name__: cls for cls in (BidirectionalAttention, ContinuousWordExperts, CBOW)
}


#: the file a fitted tabular estimator's folder holds (attnmoe.tabular.model_files, a layer above)
_CLASSIFIER_FILE = "classifier.json"
_TABULAR_CLASSES = ("AttentionMoEClassifier", "AttentionMoEImputer")


def _tabular_class(path: Path) -> str:
    """The estimator a classifier folder names (the classifier if it cannot be read)."""
    try:
        kind = read_json(path / _CLASSIFIER_FILE).get("model_type")
    except (ModelFileError, AttributeError):
        kind = None
    return kind if kind in _TABULAR_CLASSES else _TABULAR_CLASSES[0]


def load_model(directory: str | os.PathLike) -> MaskedWordModel:
    """Load any attnmoe model from a directory, whatever its form.

    Raises
    ------
    ModelFileError
        If ``directory`` holds no saved model; a fitted tabular classifier's
        folder is named as such, with the class that loads it.
    """
    path = Path(directory)
    if (path / _CLASSIFIER_FILE).is_file() and not (path / CONFIG_NAME).is_file():
        name = _tabular_class(path)
        raise ModelFileError(
            f"{directory} holds a tabular classifier ({name}, {_CLASSIFIER_FILE}), not a "
            f"masked-word model: load it with attnmoe.tabular.{name}.from_pretrained"
        )
    kind = model_type_of(directory)
    if kind not in MODEL_CLASSES:
        raise ModelFileError(f"{directory}: unknown model_type {kind!r}")
    return MODEL_CLASSES[kind].from_pretrained(directory)
