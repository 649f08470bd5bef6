"""The monitor page: what the prediction log says, day by day, for non-specialists.

:func:`monitor_data` reads the log (predictions with their latest labels) and
works out per day (UTC): how many predictions, how sure the model was, each
column's share of the gates among the logged top experts, the accuracy of the
labelled ones; the drift of each column's mean gate against the model's
training baseline (each column's mean gate over the training rows, saved with
the model and noted in the log when it starts logging), flagged past a
threshold; and per week, once labels arrive, the accuracy of each group of each
group column and its gap to the best group (the bias audit's accuracy gap).
:func:`write_monitor` writes it as one self-contained HTML page (no script or
file fetched from anywhere; inline SVG bars); ``attnmoe serve`` serves the same
page at ``GET /monitor``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from .log import PredictionLog

#: a column's gate share that moves by more than this from the baseline is flagged
DRIFT_THRESHOLD = 0.05
#: a group's accuracy this far below the best group's is flagged (the bias audit's default)
BIAS_THRESHOLD = 0.05
#: groups with fewer labelled predictions in a week are shown, never flagged
MIN_GROUP_SIZE = 10


def _gate_shares(experts: pd.Series) -> dict[str, float]:
    """Each feature's share of the gates listed in ``experts`` (JSON: head -> top experts)."""
    totals: dict[str, float] = defaultdict(float)
    for text in experts:
        for ranked in json.loads(text).values():
            for expert in ranked:
                totals[expert["feature"]] += expert["gate"]
    whole = sum(totals.values())
    return {f: g / whole for f, g in sorted(totals.items())} if whole else {}


def _mean_gates(gates: pd.Series, experts: list[str]) -> dict[str, float] | None:
    """Each expert's gate averaged over the records that logged gates (None if none did)."""
    parsed = [json.loads(g) for g in gates if isinstance(g, str) and g not in ("", "{}")]
    if not parsed:
        return None
    return {e: sum(p.get(e, 0.0) for p in parsed) / len(parsed) for e in experts}


def _day(rows: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    labelled = rows[rows["label"].notna()]
    correct = (labelled["predicted"].astype(str) == labelled["label"].astype(str)).mean()
    shares = _gate_shares(rows["experts"])
    return {
        "n": len(rows),
        "mean_probability": float(rows["probability"].mean()),
        "classes": {str(k): int(v) for k, v in rows["predicted"].value_counts().items()},
        "n_labelled": len(labelled),
        "accuracy": float(correct) if len(labelled) else None,
        "shares": {f: shares.get(f, 0.0) for f in features},
    }


def training_baseline(log: PredictionLog) -> dict[str, Any] | None:
    """The training baseline of the latest model noted in ``log`` that has one:
    ``model_id``, ``model_checksum``, ``shares`` (expert -> mean training gate).
    None when no model that logged was saved with one."""
    models = log.models()
    for _, model in models.iloc[::-1].iterrows():
        if model["baseline"] is not None:
            b = model["baseline"]
            return {
                "model_id": model["model_id"],
                "model_checksum": model["model_checksum"],
                "shares": dict(zip(b["experts"], b["overall"], strict=True)),
            }
    return None


def _drift(frame: pd.DataFrame, baseline: dict[str, Any] | None, threshold: float):
    """Per day, each expert's mean logged gate against the training baseline."""
    if baseline is None:
        return {}, []
    checksum = frame["model_checksum"]
    same = (
        checksum.isna()
        if baseline["model_checksum"] is None
        else checksum.eq(baseline["model_checksum"])
    )
    mine = frame[same & frame["model_id"].eq(baseline["model_id"])]
    experts = list(baseline["shares"])
    usage, drift = {}, []
    for day, rows in mine.groupby("day", sort=True):
        means = _mean_gates(rows["gates"], experts)
        if means is None:
            continue
        usage[day] = means
        for expert in experts:
            change = means[expert] - baseline["shares"][expert]
            drift.append({
                "day": day, "feature": expert, "baseline": baseline["shares"][expert],
                "share": means[expert], "change": change, "flagged": abs(change) > threshold,
            })  # fmt: skip
    return usage, drift


def _week(day: str) -> str:
    """The Monday (ISO 8601 date) of ``day``'s week."""
    date = dt.date.fromisoformat(day)
    return (date - dt.timedelta(days=date.weekday())).isoformat()


def _bias(labelled: pd.DataFrame, threshold: float, min_size: int) -> list[dict[str, Any]]:
    """Per week, group column and group: accuracy and its gap to the week's best group."""
    if labelled.empty:
        return []
    groups = pd.DataFrame([json.loads(g) for g in labelled["groups"]], index=labelled.index)
    out = []
    for column in sorted(groups.columns, key=str):
        values = groups[column].astype(object).where(groups[column].notna(), "(missing)")
        table = pd.DataFrame({
            "week": labelled["day"].map(_week), "group": values.astype(str),
            "hit": labelled["predicted"].astype(str) == labelled["label"].astype(str),
        })  # fmt: skip
        for week, rows in table.groupby("week", sort=True):
            stats = rows.groupby("group", sort=True)["hit"].agg(["size", "mean"])
            sized = stats[stats["size"] >= min_size]
            best = sized["mean"].max() if len(sized) else None
            for group, (n, accuracy) in stats.iterrows():
                gap = None if best is None or n < min_size else float(best - accuracy)
                out.append({
                    "week": week, "column": str(column), "group": group, "n": int(n),
                    "accuracy": float(accuracy), "gap": gap,
                    "flagged": gap is not None and gap > threshold,
                })  # fmt: skip
    return out


def monitor_data(
    log: PredictionLog,
    threshold: float = DRIFT_THRESHOLD,
    bias_threshold: float = BIAS_THRESHOLD,
    min_group_size: int = MIN_GROUP_SIZE,
) -> dict[str, Any]:
    """The monitor's content as plain data.

    Returns
    -------
    dict
        ``days`` (date -> ``n``, ``mean_probability``, ``classes`` (class -> count),
        ``n_labelled``, ``accuracy`` (None before labels), ``shares`` (column ->
        its share of the logged top experts' gates)); ``features``; ``baseline``
        (:func:`training_baseline`, None when missing); ``usage`` (date -> expert
        -> its mean gate that day, the baseline model's records); ``drift`` (one
        entry per such day and expert: ``day``, ``feature``, ``baseline``,
        ``share``, ``change``, ``flagged`` when ``|change| > threshold``);
        ``alerts`` (the flagged entries); ``bias`` (per week (its Monday), group
        column and group of the labelled predictions: ``n``, ``accuracy``,
        ``gap`` below the week's best group of at least ``min_group_size``
        (None for smaller groups), ``flagged`` when ``gap > bias_threshold``);
        ``bias_alerts``; ``n``, ``n_labelled``, ``accuracy`` (over every labelled
        prediction), ``threshold``, ``bias_threshold``, ``min_group_size``.
    """
    frame = log.labelled()
    if frame.empty:
        frame = pd.DataFrame(columns=[
            "time", "model_id", "model_checksum", "predicted", "probability", "experts",
            "groups", "gates", "label",
        ])  # fmt: skip
    frame["day"] = frame["time"].astype(str).str[:10]
    features = sorted(_gate_shares(frame["experts"]))
    days = {day: _day(rows, features) for day, rows in frame.groupby("day", sort=True)}
    baseline = training_baseline(log)
    usage, drift = _drift(frame, baseline, threshold)
    labelled = frame[frame["label"].notna()]
    hits = labelled["predicted"].astype(str) == labelled["label"].astype(str)
    bias = _bias(labelled, bias_threshold, min_group_size)
    return {
        "days": days,
        "features": features,
        "baseline": baseline,
        "usage": usage,
        "drift": drift,
        "alerts": [d for d in drift if d["flagged"]],
        "bias": bias,
        "bias_alerts": [b for b in bias if b["flagged"]],
        "n": len(frame),
        "n_labelled": len(labelled),
        "accuracy": float(hits.mean()) if len(labelled) else None,
        "threshold": threshold,
        "bias_threshold": bias_threshold,
        "min_group_size": min_group_size,
    }


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("attnmoe.serve", "templates"),
        autoescape=True,  # column names and labels come from users: text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_monitor(
    log: PredictionLog, threshold: float = DRIFT_THRESHOLD, data: dict[str, Any] | None = None
) -> str:
    """The monitor page's HTML (``data``: :func:`monitor_data`'s, if already read)."""
    data = monitor_data(log, threshold) if data is None else data
    peak = max((d["n"] for d in data["days"].values()), default=1)
    return (
        _environment()
        .get_template("monitor.html.j2")
        .render(data=data, peak=peak, log_name=log.name)
    )


def write_monitor(
    log: PredictionLog,
    out: str | Path,
    threshold: float = DRIFT_THRESHOLD,
    data: dict[str, Any] | None = None,
) -> Path:
    """Write the monitor page to ``out`` and return its path."""
    path = Path(out)
    path.write_text(build_monitor(log, threshold, data), encoding="utf-8")
    return path
