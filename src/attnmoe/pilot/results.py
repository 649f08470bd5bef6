"""A pilot's numbers: per model mean ± sd over seeds, the gap to the best alternative,
the verdict in plain words, and attnmoe's expert and audit views.

Everything here ends up in ``pilot.json`` and on the page; nothing is HTML.
The gap of an attnmoe model is its accuracy on the new rows minus the best
alternative's (best by mean accuracy), averaged over the seeds both ran, with
the standard error of those per-seed differences (paired: a seed's data split
is the same for both; only the models' randomness differs).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..explain.report import ReportData, report_data
from .plan import ALTERNATIVES, FLOOR, MODELS, OURS, TRANSDUCTIVE, TUNED
from .split import PilotSplit

__all__ = ["COSTS", "METRICS", "ExplainViews", "explain_views", "summarize", "verdict_lines"]

#: effect on the new rows: name -> (words, higher is better)
METRICS = {
    "accuracy": ("accuracy", True),
    "macro_f1": ("macro-F1", True),
    "log_loss": ("log loss", False),
    "ece": ("calibration error (ECE)", False),
}
#: cost per model: name -> words
COSTS = {
    "fit_seconds": "fit time (s)",
    "predict_seconds_per_1000": "prediction time per 1,000 rows (s)",
    "peak_memory_mb": "peak memory of the fit (MB)",
    "size_bytes": "size on disk",
}
_KIND = {OURS: "attnmoe", TUNED: "attnmoe", TRANSDUCTIVE: "transductive", FLOOR: "floor"}


def _mean_sd(values: pd.Series) -> dict[str, float]:
    values = values.astype(float)
    sd = float(values.std()) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "sd": sd}


def _per_model(rows: pd.DataFrame, model: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": _KIND.get(model, "alternative"), "seeds": len(rows)}
    for column in [*METRICS, *COSTS]:
        entry[column] = _mean_sd(rows[column])
    groups = [json.loads(g) for g in rows["group_accuracy"].fillna("{}")]
    if any(groups):
        entry["group_accuracy"] = pd.DataFrame(groups).mean().to_dict()
    if model == TUNED:
        entry["chosen"] = rows["chosen"].fillna("{}").value_counts().to_dict()
    return entry


def _gap(results: pd.DataFrame, model: str, best: str) -> dict[str, Any] | None:
    ours = results[results["model"] == model].set_index("seed")
    theirs = results[results["model"] == best].set_index("seed")
    seeds = ours.index.intersection(theirs.index)
    if not len(seeds):
        return None
    diff = ours.loc[seeds, "accuracy"] - theirs.loc[seeds, "accuracy"]
    se = float(diff.std() / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    ratio = ours.loc[seeds, "fit_seconds"].mean() / theirs.loc[seeds, "fit_seconds"].mean()
    return {
        "model": model,
        "versus": best,
        "gap": float(diff.mean()),
        "se": se,
        "seeds": len(seeds),
        "fit_time_ratio": float(ratio),
    }


def _points(value: float) -> str:
    return f"{100 * abs(value):.1f}"


def verdict_lines(gaps: list[dict[str, Any]], chosen: dict[str, int] | None = None) -> list[str]:
    """The verdict in plain words, one line per attnmoe model (defaults first)."""
    lines = []
    for g in gaps:
        direction = "above" if g["gap"] >= 0 else "below"
        spread = "" if np.isnan(g["se"]) else f" ± {_points(g['se'])}"
        what = {
            OURS: "attnmoe",
            TUNED: "attnmoe with its cost knobs chosen on the training rows",
            TRANSDUCTIVE: "attnmoe also trained on the new rows' features (transductive)",
        }[g["model"]]
        noise = ""
        if not np.isnan(g["se"]) and abs(g["gap"]) < 2 * g["se"]:
            noise = f" (within the noise of {g['seeds']} seeds)"
        lines.append(
            f"On this table {what} is {_points(g['gap'])}{spread} accuracy points {direction} "
            f"your best alternative ({g['versus']}){noise} and costs {g['fit_time_ratio']:.1f}× "
            "its training time."
        )
    return lines


def summarize(results: pd.DataFrame) -> dict[str, Any]:
    """Per model the mean ± sd over seeds of every effect and cost; the gaps; the verdict.

    Returns
    -------
    dict
        ``models`` (name -> numbers), ``best_alternative``, ``gaps`` (one per
        attnmoe model run) and ``verdict`` (lines of text).
    """
    ran = set(results["model"])
    present = [m for m in MODELS if m in ran] + sorted(ran - set(MODELS))  # the page's order
    models = {m: _per_model(results[results["model"] == m], m) for m in present}
    alternatives = [m for m in ALTERNATIVES if m in models]
    summary: dict[str, Any] = {
        "models": models,
        "best_alternative": None,
        "gaps": [],
        "verdict": [],
    }
    if not alternatives:
        return summary
    best = max(alternatives, key=lambda m: models[m]["accuracy"]["mean"])
    gaps = [g for m in (OURS, TUNED, TRANSDUCTIVE) if m in models and (g := _gap(results, m, best))]
    summary.update(best_alternative=best, gaps=gaps, verdict=verdict_lines(gaps))
    return summary


# -- attnmoe's expert and audit views ---------------------------------------------------


@dataclass
class ExplainViews:
    """The report's parts for the pilot: usage and audit on the new rows, and the
    shift of the columns' shares from the training rows to the new rows."""

    on_new: ReportData
    on_train: ReportData
    group_column: str | None

    @property
    def numbers(self) -> dict[str, Any]:
        shift = self.on_train.shift
        numbers: dict[str, Any] = {
            "model": "attnmoe, seed 0",
            "top_column_new": self.on_new.top_expert,
            "usage_shift_tv": shift.usage_tv,
            "moved": [
                {
                    "column": r["column"],
                    "train": r["before"],
                    "new": r["after"],
                    "change": r["change"],
                }
                for r in shift.moved.to_dict("records")
            ],
        }
        usage = self.on_new.usage.set_axis(["column", "gate", "strongest_share"], axis=1)
        numbers["usage_new"] = usage.to_dict("records")
        numbers["explained_rows"] = [asdict(r) for r in self.on_new.explained or []]
        if (a := self.on_new.accuracy) is not None:
            numbers["reliability_new"] = a.reliability.to_dict("records")
        groups = self.on_new.groups
        if groups is not None and groups.result is not None:
            gaps = groups.result.gaps
            numbers["audit_flagged"] = int(gaps["flagged"].sum())
            numbers["audit"] = gaps.to_dict("records")
        return numbers


def explain_views(
    clf: Any, split: PilotSplit, group: str | None = None, n_bootstrap: int = 200
) -> ExplainViews:
    """:func:`~attnmoe.explain.report_data` of a fitted attnmoe on the new rows (usage,
    a few explained rows, the bias audit by ``group``) and on the training rows
    against the new ones (what moved)."""
    target = split.target
    train = split.X_train.assign(**{target: split.y_train})
    new = split.X_test.assign(**{target: split.y_test})
    column = None
    if group is not None and split.group_test is not None:
        column = group if group not in split.features and group != target else f"{group} (group)"
        new[column] = split.group_test.to_numpy()
    # values never seen in training are masked: the usage and the audit already show it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        on_new = report_data(clf, new, target=target, group=column, n_explained=3,
                             n_bootstrap=n_bootstrap, title="attnmoe on the new rows")  # fmt: skip
        on_train = report_data(clf, train, target=target, shift_data=new, n_explained=0)
    return ExplainViews(on_new, on_train, column)
