"""One self-contained HTML page that explains a fitted classifier to non-specialists.

Two steps: :func:`report_data` computes the page's numbers and tables (a
:class:`ReportData`, no HTML), :func:`render_report` draws the plots and fills
the template ``explain/templates/report.html.j2`` (autoescaped: the user's
column names, labels and group values are always text). No network is needed
to build or to view the page: plots are PNGs drawn with matplotlib's Agg
backend and embedded as base64, the style sheet and the one small script are
inline. Every key number sits in an element with an ``id`` and a
``data-value`` attribute holding the unrounded value, so the page can be
checked by a machine (the tests parse it from a headless browser's DOM).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..files import write_text_atomically
from ..tabular.encoding import label_indices
from . import plots
from .attribution import explain, top_experts
from .audit import AuditResult, audit, expected_calibration_error
from .pages import Kpi, percent, render, table
from .usage import ExpertUsageLog, expert_names, target_gates


@dataclass
class ExplainedRow:
    """One row of "why individual rows got their prediction"."""

    row: int
    predicted: str
    probability: float
    true: str | None
    #: up to three dicts ``feature``, ``value``, ``share`` (of the score), ``gate``
    experts: list[dict[str, Any]]


@dataclass
class Accuracy:
    """Accuracy, calibration and confusion on the labelled rows."""

    n_labelled: int
    left_out: int
    accuracy: float
    ece: float
    confusion: np.ndarray
    #: per non-empty confidence bin: ``confidence``, ``share_correct``, ``rows``
    reliability: pd.DataFrame


@dataclass
class Shift:
    """Expert usage (and accuracy) on new data against the report's data."""

    n_rows: int
    usage_tv: float
    before: pd.Series
    after: pd.Series
    moved: pd.DataFrame
    accuracy: float | None = None
    unlabelled: int = 0


@dataclass
class GroupAudit:
    """Expert usage by group and, with a target, :func:`~attnmoe.explain.audit`'s result."""

    column: str
    usage: pd.DataFrame
    result: AuditResult | None
    threshold: float
    seed: int


@dataclass
class ReportData:
    """Everything the report shows, as numbers and tables (no HTML).

    A section that was not asked for (no target, group, shift data or rows to
    explain) is ``None``.
    """

    title: str
    n_rows: int
    features: list[str]
    classes: list[str]
    #: the model's shape in words: top_k, block, n_heads, n_layers, n_members
    model: dict[str, Any]
    usage_by_class: pd.DataFrame
    usage: pd.DataFrame
    top_expert: str
    explained: list[ExplainedRow] | None = None
    exact_shares: bool = True
    accuracy: Accuracy | None = None
    shift: Shift | None = None
    groups: GroupAudit | None = None
    #: the column of true labels, if any
    target: str | None = None

    @property
    def numbers(self) -> dict[str, Any]:
        """The key numbers, as the page's ``data-value`` attributes hold them."""
        numbers: dict[str, Any] = {"n_rows": self.n_rows, "top_expert": self.top_expert}
        if self.accuracy is not None:
            a = self.accuracy
            numbers.update(n_labelled=a.n_labelled, accuracy=a.accuracy, ece=a.ece)
            numbers["confusion"] = a.confusion.tolist()
        if self.shift is not None:
            numbers["shift_usage_tv"] = self.shift.usage_tv
            if self.shift.accuracy is not None:
                numbers["shift_accuracy"] = self.shift.accuracy
        if self.groups is not None and self.groups.result is not None:
            result = self.groups.result
            numbers["audit_flagged"] = int(result.gaps["flagged"].sum())
            numbers["group_accuracy"] = result.groups["accuracy"].to_dict()
        return numbers


def _check_columns(data, target, group, shift_data, features: list[str]) -> None:
    for frame, what in ((data, "DATA"), (shift_data, "--shift-data")):
        if frame is None:
            continue
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise ValueError(f"{what} lacks the model's columns {missing}")
    for column in (target, group):
        if column is not None and column not in data.columns:
            raise ValueError(f"DATA has no column {column!r}")


def _pick_rows(X: pd.DataFrame, pred: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` distinct rows, taken in turn from each predicted class."""
    distinct = np.flatnonzero(~X.astype(str).duplicated().to_numpy())
    by_class = [distinct[pred[distinct] == c] for c in np.unique(pred[distinct])]
    picked: list[int] = []
    for k in range(max((len(b) for b in by_class), default=0)):
        for rows in by_class:
            if k < len(rows) and len(picked) < n:
                picked.append(int(rows[k]))
    return np.array(sorted(picked), dtype=int)


def _explained_rows(clf, X, truth, proba, predicted, n: int) -> list[ExplainedRow]:
    chosen_rows = _pick_rows(X, proba.argmax(1), n)
    ranked = top_experts(explain(clf, X.iloc[chosen_rows]), n=3)
    rows = []
    for r, source in enumerate(int(s) for s in chosen_rows):
        picked = ranked[ranked["row"] == r]
        experts = [
            {"feature": e["feature"], "value": e["value"], "share": e["share"], "gate": e["gate"]}
            for _, e in picked.iterrows()
        ]
        rows.append(
            ExplainedRow(
                row=source,
                predicted=predicted[source],
                probability=float(proba[source].max()),
                true=None if truth is None else str(truth.iloc[source]),
                experts=experts,
            )
        )
    return rows


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean confidence, share correct and row count of each non-empty equal-width bin."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    records = [
        {
            "confidence": confidence[which == b].mean(),
            "share_correct": correct[which == b].mean(),
            "rows": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]
    return pd.DataFrame.from_records(records, columns=["confidence", "share_correct", "rows"])


def _labelled(data: pd.DataFrame, target: str) -> np.ndarray:
    labelled = ~pd.isna(data[target]).to_numpy()  # rows without a label are not scored
    if not labelled.any():
        raise ValueError(f"the target column {target!r} holds no labels")
    if not labelled.all():
        warnings.warn(
            f"{int((~labelled).sum())} of {len(data)} rows have no {target!r} label and are "
            "left out of accuracy, calibration and the audit",
            stacklevel=3,
        )
    return labelled


def _accuracy(clf, y: pd.Series, proba: np.ndarray) -> Accuracy:
    y_idx = label_indices(clf.classes_, y)
    pred = proba.argmax(1)
    correct = pred == y_idx
    n = len(clf.classes_)
    matrix = np.zeros((n, n), dtype=int)
    known = y_idx >= 0
    np.add.at(matrix, (y_idx[known], pred[known]), 1)
    return Accuracy(
        n_labelled=len(y_idx),
        left_out=0,
        accuracy=float(correct.mean()),
        ece=expected_calibration_error(proba.max(1), correct),
        confusion=matrix,
        reliability=reliability_bins(proba.max(1), correct),
    )


def _shift(clf, shift_data, target, names, features, gates) -> Shift:
    X_new = shift_data[features]
    before = pd.Series(gates.mean((0, 1)), index=names)
    after = pd.Series(target_gates(clf, X_new).mean((0, 1)), index=names)
    moved = pd.DataFrame(
        {
            "column": names,
            "before": before.to_numpy(),
            "after": after.to_numpy(),
            "change": (after - before).to_numpy(),
        }
    ).sort_values("change", key=np.abs, ascending=False)
    shift = Shift(len(shift_data), 0.5 * float(np.abs(before - after).sum()), before, after, moved)
    if target is not None and target in shift_data.columns and shift_data[target].notna().any():
        pred_new = clf.predict_proba(X_new).argmax(1)
        labelled = ~pd.isna(shift_data[target]).to_numpy()
        y_new = label_indices(clf.classes_, shift_data[target])
        shift.accuracy = float((pred_new == y_new)[labelled].mean())
        shift.unlabelled = int((~labelled).sum())
    return shift


def _model_words(clf) -> dict[str, Any]:
    cfg = clf.models_[0].config
    return {
        "top_k": cfg.top_k,
        "block": cfg.block,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "n_members": len(clf.models_),
    }


def _usage(log: ExpertUsageLog, classes: list[str], names: list[str]):
    by_class = log.usage("class")
    by_class = by_class.reindex([c for c in classes if c in by_class.index])
    overall = log.usage("overall").iloc[0]
    table = pd.DataFrame(
        {
            "column (expert)": overall.index,
            "mean gate weight": overall.to_numpy(),
            "strongest expert in (share of rows)": [
                log._stats["overall"]["all"][2][j] / max(1, log.n_rows) for j in range(len(names))
            ],
        }
    )
    return by_class, table, str(overall.idxmax())


def report_data(
    clf,
    data: pd.DataFrame,
    target: str | None = None,
    group: str | None = None,
    shift_data: pd.DataFrame | None = None,
    *,
    n_explained: int = 5,
    n_bootstrap: int = 200,
    threshold: float = 0.05,
    random_state: int = 0,
    title: str = "attnmoe model report",
) -> ReportData:
    """The report's numbers and tables; parameters as :func:`build_report`."""
    names = expert_names(clf)
    features = list(names[:-1])
    _check_columns(data, target, group, shift_data, features)
    X = data[features]
    proba = clf.predict_proba(X)
    gates = target_gates(clf, X)
    classes = [str(c) for c in clf.classes_]
    predicted = np.asarray(classes, dtype=object)[proba.argmax(1)]
    log = ExpertUsageLog.for_classifier(clf)
    log.update(gates, predicted=predicted, group=None if group is None else data[group])
    by_class, usage, top = _usage(log, classes, names)
    report = ReportData(
        title=title,
        n_rows=len(data),
        features=features,
        classes=classes,
        model=_model_words(clf),
        usage_by_class=by_class,
        usage=usage,
        top_expert=top,
        target=target,
    )
    if n_explained > 0:
        truth = None if target is None else data[target]
        report.explained = _explained_rows(clf, X, truth, proba, predicted, n_explained)
        report.exact_shares = clf.models_[0].config.block == "pure"
    result = None
    if target is not None:
        labelled = _labelled(data, target)
        report.accuracy = _accuracy(clf, data[target][labelled], proba[labelled])
        report.accuracy.left_out = len(data) - int(labelled.sum())
        if group is not None:
            result = audit(  # the labelled rows only: already warned about the others
                clf,
                X[labelled],
                data[target][labelled],
                group=data[group].to_numpy()[labelled],
                threshold=threshold,
                n_bootstrap=n_bootstrap,
                random_state=random_state,
                proba=proba[labelled],
                gates=gates[labelled],
            )
    if shift_data is not None:
        report.shift = _shift(clf, shift_data, target, names, features, gates)
    if group is not None:
        report.groups = GroupAudit(group, log.usage("group"), result, threshold, random_state)
    return report


def _kpis(report: ReportData) -> list[Kpi]:
    n = report.n_rows
    kpis = [Kpi("n-rows", n, f"{n:,}", "rows scored")]
    if (a := report.accuracy) is not None:
        kpis.append(
            Kpi("accuracy", a.accuracy, percent(a.accuracy), "accuracy", "share of rows right")
        )
        kpis.append(
            Kpi("ece", a.ece, f"{a.ece:.3f}", "calibration error (ECE)", "0 = honest probabilities")
        )
    if (s := report.shift) is not None:
        tv = s.usage_tv
        kpis.append(
            Kpi("shift-usage-tv", tv, f"{tv:.3f}", "expert-usage shift", "0 = same columns used")
        )
        if s.accuracy is not None:
            kpis.append(
                Kpi("shift-accuracy", s.accuracy, percent(s.accuracy), "accuracy on new data")
            )
    if report.groups is not None and report.groups.result is not None:
        flagged = report.numbers["audit_flagged"]
        kpis.append(
            Kpi("audit-flagged", flagged, str(flagged), "audit flags", "gaps above the limit")
        )
    return kpis


def _plots(report: ReportData) -> dict[str, str]:
    """Each plot of the page as a ``data:`` URI, by name."""
    drawn = {
        "usage": plots.heatmap(
            report.usage_by_class.T, "Expert usage by predicted class", "predicted class", "column"
        )
    }
    if (a := report.accuracy) is not None:
        drawn["reliability"] = plots.reliability(a.reliability, a.n_labelled)
        drawn["confusion"] = plots.confusion(a.confusion, report.classes)
    if report.shift is not None:
        drawn["shift"] = plots.shift_bars(report.shift.before, report.shift.after)
    if report.groups is not None:
        drawn["groups"] = plots.heatmap(
            report.groups.usage.T, "Expert usage by group", "group", "column"
        )
    return drawn


def _gap_rows(result: AuditResult) -> list[dict[str, Any]]:
    gaps = result.gaps
    return [
        {**row, "interval": f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"}
        for row in gaps.to_dict("records")
    ]


def render_report(report: ReportData) -> str:
    """The HTML page of :func:`report_data`'s result (template ``report.html.j2``)."""
    result = report.groups.result if report.groups is not None else None
    return render(
        "report.html.j2",
        r=report,
        title=report.title,
        numbers=report.numbers,
        numbers_shown=_kpis(report),
        plots=_plots(report),
        usage_table=table(report.usage),
        moved_table=None if report.shift is None else table(report.shift.moved),
        group_rows=None if result is None else result.groups.reset_index().to_dict("records"),
        gap_rows=None if result is None else _gap_rows(result),
    )


def build_report(clf, data: pd.DataFrame, **options: Any) -> tuple[str, dict[str, Any]]:
    """The report page and the numbers it shows.

    Parameters
    ----------
    clf
        A fitted :class:`~attnmoe.tabular.AttentionMoEClassifier`.
    data
        Rows with the model's columns; optionally the target and a group column.
    **options
        Keywords of :func:`report_data`, passed on:

        target : str or None
            Column of true labels (enables accuracy, calibration, confusion, audit).
        group : str or None
            Column to audit by (need not be a model feature).
        shift_data : DataFrame or None
            New rows to compare expert usage (and accuracy, with ``target``) against.
        n_explained : int, default 5
            Rows whose top experts are listed.
        n_bootstrap, threshold, random_state : default 200, 0.05, 0
            Passed to :func:`~attnmoe.explain.audit`.
        title : str, default "attnmoe model report"
            The page's title and heading (text: never read as markup).

    Returns
    -------
    html : str
    numbers : dict
        The key numbers, as placed in the page's ``data-value`` attributes.
    """
    report = report_data(clf, data, **options)
    return render_report(report), report.numbers


def write_report(clf, data: pd.DataFrame, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Write :func:`build_report`'s page to ``out``; returns its numbers.

    The page is written whole or not at all (a temporary file beside ``out``,
    renamed into place; see :func:`attnmoe.files.staged_path`): a failed write
    leaves an existing ``out`` as it was.
    """
    page, numbers = build_report(clf, data, **kwargs)
    write_text_atomically(out, page)
    return numbers
