"""The monitor page: what the prediction log says, day by day, for non-specialists.

:func:`monitor_data` reads the log (predictions with their latest labels) and
works out per day (UTC): how many predictions, how sure the model was, each
column's share of the gates among the logged top experts, the accuracy of the
labelled ones; and the drift of each column's gate share against the first day,
flagged past a threshold. :func:`write_monitor` writes it as one self-contained
HTML page (no script or file fetched from anywhere; inline SVG bars).
"""

from __future__ import annotations

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


def _gate_shares(experts: pd.Series) -> dict[str, float]:
    """Each feature's share of the gates listed in ``experts`` (JSON: head -> top experts)."""
    totals: dict[str, float] = defaultdict(float)
    for text in experts:
        for ranked in json.loads(text).values():
            for expert in ranked:
                totals[expert["feature"]] += expert["gate"]
    whole = sum(totals.values())
    return {f: g / whole for f, g in sorted(totals.items())} if whole else {}


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


def monitor_data(log: PredictionLog, threshold: float = DRIFT_THRESHOLD) -> dict[str, Any]:
    """The monitor's content as plain data.

    Returns
    -------
    dict
        ``days`` (date -> ``n``, ``mean_probability``, ``classes`` (class -> count),
        ``n_labelled``, ``accuracy`` (None before labels), ``shares`` (column ->
        its share of the logged gates)); ``features``; ``drift`` (one entry per
        day after the first and column: ``day``, ``feature``, ``baseline``,
        ``share``, ``change``, ``flagged`` when ``|change| > threshold``);
        ``alerts`` (the flagged entries); ``n``, ``n_labelled``, ``accuracy``
        (over every labelled prediction), ``threshold``.
    """
    frame = log.labelled()
    if frame.empty:
        frame = pd.DataFrame(columns=["time", "predicted", "probability", "experts", "label"])
    frame["day"] = frame["time"].astype(str).str[:10]
    features = sorted(_gate_shares(frame["experts"]))
    days = {day: _day(rows, features) for day, rows in frame.groupby("day", sort=True)}
    drift = []
    if days:
        baseline = next(iter(days.values()))["shares"]
        for day, facts in list(days.items())[1:]:
            for feature in features:
                change = facts["shares"][feature] - baseline[feature]
                drift.append({
                    "day": day, "feature": feature, "baseline": baseline[feature],
                    "share": facts["shares"][feature], "change": change,
                    "flagged": abs(change) > threshold,
                })  # fmt: skip
    labelled = frame[frame["label"].notna()]
    hits = labelled["predicted"].astype(str) == labelled["label"].astype(str)
    return {
        "days": days,
        "features": features,
        "drift": drift,
        "alerts": [d for d in drift if d["flagged"]],
        "n": len(frame),
        "n_labelled": len(labelled),
        "accuracy": float(hits.mean()) if len(labelled) else None,
        "threshold": threshold,
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


def build_monitor(log: PredictionLog, threshold: float = DRIFT_THRESHOLD) -> str:
    """The monitor page's HTML."""
    data = monitor_data(log, threshold)
    peak = max((d["n"] for d in data["days"].values()), default=1)
    return (
        _environment()
        .get_template("monitor.html.j2")
        .render(data=data, peak=peak, log_name=log.name)
    )


def write_monitor(log: PredictionLog, out: str | Path, threshold: float = DRIFT_THRESHOLD) -> Path:
    """Write the monitor page to ``out`` and return its path."""
    path = Path(out)
    path.write_text(build_monitor(log, threshold), encoding="utf-8")
    return path
