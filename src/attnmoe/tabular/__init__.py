"""Categorical tables as sentences: scikit-learn estimators built on the MLM model."""

from .encoding import TableEncoder
from .estimators import AttentionMoEClassifier, AttentionMoEImputer
from .shift import AtypicalHoldout, pair_typicality

__all__ = [
    "AttentionMoEClassifier",
    "AttentionMoEImputer",
    "AtypicalHoldout",
    "TableEncoder",
    "pair_typicality",
]
