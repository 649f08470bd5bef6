"""Categorical tables as sentences: scikit-learn estimators built on the MLM model."""

from .encoding import TableEncoder
from .estimators import AttentionMoEClassifier, AttentionMoEImputer

__all__ = ["AttentionMoEClassifier", "AttentionMoEImputer", "TableEncoder"]
