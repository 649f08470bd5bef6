"""One-layer classifiers answered from precomputed experts-form tables (NumPy, float64).

The tables and their arithmetic are :mod:`attnmoe.model.tables` (the same code
runs the estimator's ``predict_proba``); this module reads them off a fitted
classifier. For a row they give the gates, the logits and each expert's share of
the predicted class's logit with a few lookups: the same numbers as
:func:`~attnmoe.explain.explain` (pure form: the exact shares; bert form: the
integrated gradients through the link, same midpoints) and as ``predict_proba``.

:meth:`ExpertTables.for_classifier` returns None for the models this does not
cover (more than one layer, sparse or windowed gating), which keep the
``explain`` path.
"""

from __future__ import annotations

from ..model import tables


class ExpertTables(tables.ExpertTables):
    """:class:`attnmoe.model.tables.ExpertTables` of a fitted classifier's members."""

    @classmethod
    def for_classifier(cls, clf) -> ExpertTables | None:
        """The tables of ``clf``'s members predicting its target (the last location);
        None when a member is not covered (those are explained by
        :func:`~attnmoe.explain.explain` instead)."""
        return cls.of(clf.models_, len(clf.classes_))
