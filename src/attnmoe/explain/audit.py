"""Bias audit: does the model, or its choice of experts, treat groups differently?

For each group the audit measures accuracy, error rates, calibration (expected
calibration error) and the distribution of expert usage; it then compares every
group with the best one, with seeded bootstrap confidence intervals
(:func:`scipy.stats.bootstrap`, rows resampled within each group), and flags
the gaps that are both larger than a threshold and distinguishable from zero.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import DegenerateDataWarning, bootstrap, quantile

from ..tabular.encoding import label_indices
from .usage import expert_names, target_gates

#: metric -> True when higher is better: the metrics compared across groups. The
#: error rate (1 - accuracy, in ``AuditResult.groups``) is not among them: its gap
#: is accuracy's, and one gap must count as one flag.
METRICS: dict[str, bool] = {
    "accuracy": True,
    "false_negative_rate": False,
    "false_positive_rate": False,
    "ece": False,
}


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> float:
    """ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    if len(confidence) == 0:
        return float("nan")
    which = np.minimum((np.asarray(confidence) * bins).astype(int), bins - 1)
    conf = np.bincount(which, weights=confidence, minlength=bins)
    acc = np.bincount(which, weights=np.asarray(correct, dtype=float), minlength=bins)
    return float(np.abs(acc - conf).sum() / len(confidence))


def _metrics(y: np.ndarray, pred: np.ndarray, conf: np.ndarray, n_classes: int) -> dict:
    correct = y == pred
    recalls, fprs = [], []
    # two classes: the rates of the second (the positive one); averaged over both,
    # the false-negative and false-positive rates would be one number
    for c in [1] if n_classes == 2 else range(n_classes):
        positive = y == c
        if positive.any():
            recalls.append(float((pred[positive] == c).mean()))
        if (~positive).any():
            fprs.append(float((pred[~positive] == c).mean()))
    accuracy = float(correct.mean()) if len(y) else float("nan")
    return {
        "accuracy": accuracy,
        "error_rate": 1.0 - accuracy,
        "false_negative_rate": 1.0 - float(np.mean(recalls)) if recalls else float("nan"),
        "false_positive_rate": float(np.mean(fprs)) if fprs else float("nan"),
        "ece": expected_calibration_error(conf, correct),
    }


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    # total variation distance between two usage distributions over experts
    return 0.5 * float(np.abs(a - b).sum())


def _best_groups(point: dict[str, dict], eligible: list[str]) -> dict[str, str]:
    """Per metric of :data:`METRICS`, the eligible group with the best defined value."""
    best = {}
    for metric, higher in METRICS.items():
        values = {g: point[g][metric] for g in eligible if not np.isnan(point[g][metric])}
        if values:
            best[metric] = (max if higher else min)(values, key=values.get)
    return best


def _gap_keys(best: dict[str, str], names: list[str]) -> list[tuple[str, str]]:
    """(metric, group) of each entry of :func:`_gap_vector`, in its order."""
    return [(m, g) for m in best for g in names] + [("expert_usage_tv", g) for g in names]


def _gap_vector(metric: dict, tv: dict, best: dict[str, str], names: list[str]) -> np.ndarray:
    """How much worse than the best group each group is per metric, then the usage distances."""
    gaps = [
        (1.0 if METRICS[m] else -1.0) * (metric[best[m]][m] - metric[g][m])
        for m, g in _gap_keys(best, names)
        if m != "expert_usage_tv"
    ]
    return np.array(gaps + [tv[g] for g in names], dtype=float)


def _intervals(
    statistic, members: dict[str, np.ndarray], n_bootstrap: int, confidence: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of each entry of ``statistic``, rows resampled within
    each group: :func:`scipy.stats.bootstrap` with one sample (row indices) per group,
    resampled independently (``paired=False``).

    scipy refuses one-row samples; a one-row group always resamples to itself, so it
    is held fixed. A resample where a metric is undefined (a group drawn without
    positives) is left out of that metric's interval, where scipy's would be NaN.
    """
    varying = [g for g in members if len(members[g]) > 1]
    fixed = {g: i for g, i in members.items() if len(i) == 1}
    if not varying:  # nothing to resample
        point = statistic(members)
        return point, point

    def resampled(*samples: np.ndarray) -> np.ndarray:
        return statistic({**fixed, **dict(zip(varying, samples, strict=True))})

    n_rows = sum(len(i) for i in members.values())
    with warnings.catch_warnings():  # NaN intervals are redone below
        warnings.simplefilter("ignore", DegenerateDataWarning)
        result = bootstrap(
            [members[g] for g in varying],
            resampled,
            n_resamples=n_bootstrap,
            batch=max(1, 2**22 // n_rows),  # memory: batch x rows indices at a time
            vectorized=False,
            paired=False,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = (np.array(v, dtype=float, ndmin=1) for v in result.confidence_interval)
    redo = np.isnan(low) | np.isnan(high)
    if redo.any():
        tail = (1.0 - confidence) / 2.0
        draws = result.bootstrap_distribution[redo]
        low[redo], high[redo] = quantile(draws, [tail, 1 - tail], axis=-1, nan_policy="omit").T
    return low, high


def _gap_record(metric, g, n, point, point_tv, best, gap, low, high, limits) -> dict[str, Any]:
    """One row of :attr:`AuditResult.gaps`; ``limits``: threshold, usage_threshold, min size."""
    threshold, usage_threshold, min_group_size = limits
    tv = metric == "expert_usage_tv"
    if tv:  # distinguishable from zero is not enough: the whole interval above the limit
        flagged = low > usage_threshold
    else:
        flagged = gap > threshold and low > 0
    return {
        "group": g,
        "n": n,
        "metric": metric,
        "value": point_tv[g] if tv else point[g][metric],
        "best_group": "(other groups)" if tv else best[metric],
        "best_value": 0.0 if tv else point[best[metric]][metric],
        "gap": float(gap),
        "ci_low": float(low),
        "ci_high": float(high),
        "flagged": bool(n >= min_group_size and flagged),
    }


@dataclass
class AuditResult:
    """What :func:`audit` found.

    Attributes
    ----------
    groups : pandas.DataFrame
        One row per group: ``n`` and every metric (accuracy, error_rate,
        false_negative_rate and false_positive_rate, ece). The two rates are
        those of the positive class (``classes_[1]``) for two classes, else
        macro averages over classes.
    gaps : pandas.DataFrame
        One row per (group, metric of :data:`METRICS`): ``value``, ``best_group``, ``best_value``,
        ``gap`` (how much worse than the best group, >= 0 means worse),
        ``ci_low``/``ci_high`` (bootstrap percentile interval of the gap) and
        ``flagged``. The metric ``expert_usage_tv`` is the total variation
        distance between the group's expert usage and that of all other rows.
    usage : pandas.DataFrame
        Mean gate per expert (columns), averaged over heads, per group (rows).
    threshold, usage_threshold : float
        Flag limits for the performance gaps and for the usage distance.
    """

    groups: pd.DataFrame
    gaps: pd.DataFrame
    usage: pd.DataFrame
    threshold: float
    usage_threshold: float
    n_bootstrap: int
    confidence: float
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> pd.DataFrame:
        """The flagged gaps only."""
        return self.gaps[self.gaps["flagged"]].reset_index(drop=True)

    @property
    def any_flagged(self) -> bool:
        return bool(self.gaps["flagged"].any())


def _features(clf, X: pd.DataFrame) -> pd.DataFrame:
    names = getattr(clf, "feature_names_in_", None)
    if names is not None and isinstance(X, pd.DataFrame):
        missing = [n for n in names if n not in X.columns]
        if missing:
            raise ValueError(f"X lacks the model's columns {missing}")
        return X[list(names)]
    return X


def audit(
    model: Any,
    X: Any,
    y: Sequence[Hashable],
    group: str | Sequence[Hashable],
    *,
    threshold: float = 0.05,
    usage_threshold: float = 0.1,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    min_group_size: int = 10,
    random_state: int = 0,
    proba: np.ndarray | None = None,
    gates: np.ndarray | None = None,
) -> AuditResult:
    """Compare accuracy, error rates, calibration and expert usage across groups.

    Parameters
    ----------
    model
        A fitted :class:`~attnmoe.tabular.AttentionMoEClassifier`.
    X
        Rows (DataFrame); extra columns (e.g. the group) are ignored.
    y
        True labels.
    group
        A column of ``X`` or one label per row (need not be a model feature).
    threshold
        A performance gap larger than this (absolute, e.g. 0.05 = 5 accuracy
        points) whose confidence interval excludes zero is flagged.
    usage_threshold
        An expert-usage distance (total variation, 0..1) is flagged when even
        the low end of its interval exceeds this.
    n_bootstrap, confidence, random_state
        Bootstrap replicates (rows resampled within each group, by
        :func:`scipy.stats.bootstrap`), level of the percentile intervals and
        seed: the same seed gives the same intervals.
    min_group_size
        Smaller groups are reported but never flagged (too few rows to say).
    proba, gates
        Precomputed ``predict_proba(X)`` and :func:`target_gates` (optional).

    Returns
    -------
    AuditResult
    """
    count = n_bootstrap
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"n_bootstrap must be an integer >= 1, got {n_bootstrap!r}")
    if isinstance(group, str):
        if not (isinstance(X, pd.DataFrame) and group in X.columns):
            raise ValueError(f"group {group!r} is not a column of X")
        groups = X[group].to_numpy()
    else:
        groups = np.asarray(group, dtype=object)
    features = _features(model, X)
    labels = np.asarray(y, dtype=object).reshape(-1)
    for what, n in (("group", len(groups)), ("y", len(labels))):
        if n != len(features):
            raise ValueError(f"{what} has {n} labels for {len(features)} rows")
    groups = pd.Series(groups, dtype=object).fillna("(missing)").astype(str).to_numpy()
    if proba is None:
        proba = model.predict_proba(features)
    if gates is None:
        gates = target_gates(model, features)
    labelled = ~pd.isna(labels)
    if not labelled.any():
        raise ValueError("y has no labels (all missing)")
    if not labelled.all():  # nothing to score them against; counting them wrong would bias
        warnings.warn(
            f"{int((~labelled).sum())} of {len(labels)} rows have no true label and are "
            "left out of the audit",
            stacklevel=2,
        )
        groups, labels, proba, gates = (a[labelled] for a in (groups, labels, proba, gates))
    usage = gates.mean(1)  # (n, experts): head-averaged, sums to one per row
    # labels the model never saw count as errors (index -1 never matches a prediction)
    y_idx = label_indices(model.classes_, labels)
    pred = proba.argmax(1)
    conf = proba.max(1)
    n_classes = len(model.classes_)
    names = sorted(pd.unique(groups))
    members = {g: np.flatnonzero(groups == g) for g in names}

    def evaluate(index: dict[str, np.ndarray]) -> tuple[dict, dict]:
        metric = {g: _metrics(y_idx[i], pred[i], conf[i], n_classes) for g, i in index.items()}
        all_rows = np.concatenate(list(index.values()))
        total = usage[all_rows].sum(0)
        tv = {}
        for g, i in index.items():
            rest = len(all_rows) - len(i)
            mine = usage[i].mean(0)
            other = (total - usage[i].sum(0)) / rest if rest else mine
            tv[g] = _tv(mine, other)
        return metric, tv

    point, point_tv = evaluate(members)
    eligible = [g for g in names if len(members[g]) >= min_group_size] or names
    best = _best_groups(point, eligible)

    def statistic(index: dict[str, np.ndarray]) -> np.ndarray:
        return _gap_vector(*evaluate(index), best, names)

    low, high = _intervals(statistic, members, n_bootstrap, confidence, random_state)
    gap = statistic(members)
    limits = (threshold, usage_threshold, min_group_size)
    records = [
        _gap_record(
            metric, g, len(members[g]), point, point_tv, best, gap[k], low[k], high[k], limits
        )
        for k, (metric, g) in enumerate(_gap_keys(best, names))
    ]
    table = pd.DataFrame([{"group": g, "n": len(members[g]), **point[g]} for g in names]).set_index(
        "group"
    )
    usage_frame = pd.DataFrame(
        {g: usage[members[g]].mean(0) for g in names}, index=expert_names(model)
    ).T
    usage_frame.index.name = "group"
    notes = []
    small = [g for g in names if len(members[g]) < min_group_size]
    if small:
        notes.append(f"groups with fewer than {min_group_size} rows are never flagged: {small}")
    if (y_idx < 0).any():
        notes.append(f"{int((y_idx < 0).sum())} labels unknown to the model count as errors")
    return AuditResult(
        groups=table,
        gaps=pd.DataFrame.from_records(records),
        usage=usage_frame,
        threshold=threshold,
        usage_threshold=usage_threshold,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        notes=notes,
    )
