"""A whole pilot in one call: split, run (resumable), summarize, write the page and the JSON.

:func:`pilot` writes into its folder ``settings.json`` (what was asked),
``runs.csv`` (one row per finished model and seed), ``models/`` (attnmoe, seed
0, for the expert views), ``pilot.json`` (every number of the page) and
``pilot.html``. :func:`compare` puts several pilots' ``pilot.json`` side by side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..bench.cost import machine_description
from ..files import write_text_atomically
from .page import compare_html, pilot_html
from .plan import BUDGETS, OURS, check_settings, default_models, plan_pilot
from .results import explain_views, summarize
from .run import EXPLAINED, run_pilot
from .split import make_split

__all__ = ["compare", "json_safe", "pilot", "read_pilot"]


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return json_safe(value.item())
    return value


def _fingerprint(frame: pd.DataFrame | None) -> str | None:
    """A short hash of a table's values and column names (a resume must use the same data)."""
    if frame is None:
        return None
    values = pd.util.hash_pandas_object(frame, index=False).sum()
    names = pd.util.hash_pandas_object(pd.Series([str(c) for c in frame.columns])).sum()
    return f"{int(values) & 0xFFFFFFFFFFFF:012x}{int(names) & 0xFFFF:04x}"


def pilot(
    data: pd.DataFrame,
    target: str,
    out: str | Path,
    *,
    split_by: str | None = None,
    train: Sequence[str] | None = None,
    time: str | None = None,
    cutoff: str | None = None,
    new: pd.DataFrame | None = None,
    group: str | None = None,
    drop: Sequence[str] = (),
    budget: str = "quick",
    seeds: int | None = None,
    models: Sequence[str] | None = None,
    params: dict[str, Any] | None = None,
    jobs: int = 1,
    progress: bool = True,
    title: str | None = None,
    data_name: str = "DATA",
    command: str = "",
    n_bootstrap: int = 200,
) -> dict[str, Any]:
    """Run a pilot of attnmoe against the usual models on one table; write its page.

    Parameters
    ----------
    data, target, split_by, train, time, cutoff, new, group, drop
        The table and the shift definition: :func:`~attnmoe.pilot.split.make_split`.
    out : path
        The pilot's folder. A rerun with the same settings resumes what is missing;
        with other settings it is refused.
    budget : {"quick", "standard", "thorough"}
        Seeds and the size of attnmoe's cost-knob sweep (:data:`~attnmoe.pilot.plan.BUDGETS`).
    seeds : int, optional
        Overrides the budget's seeds.
    models : sequence of str, optional
        Default: every model of :data:`~attnmoe.pilot.plan.MODELS` that is installed.
    params : dict, optional
        Fixed parameters of every attnmoe model (e.g. ``{"epochs": 100}``).
    jobs : int
        Fits at a time (one thread each).
    title, data_name, command : str
        The page's title, the data in words and the command that ran it.
    n_bootstrap : int
        Resamples of the bias audit's intervals.

    Returns
    -------
    dict
        The content of ``pilot.json``.
    """
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose from {list(BUDGETS)}")
    split = make_split(
        data,
        target,
        split_by=split_by,
        train=train,
        time=time,
        cutoff=cutoff,
        new=new,
        group=group,
        drop=drop,
    )
    plan = BUDGETS[budget]
    n_seeds = plan.seeds if seeds is None else seeds
    chosen = list(models) if models is not None else default_models()
    runs = plan_pilot(chosen, n_seeds)
    out = Path(out)
    settings = {
        "target": target,
        "shift": split.description,
        "group": group,
        "drop": list(drop),
        "budget": budget,
        "sweep": list(plan.sweep),
        "seeds": n_seeds,
        "models": chosen,
        "params": params or {},
        "data": _fingerprint(data),
        "new": _fingerprint(new),
    }
    check_settings(out, settings)
    for note in split.notes:
        print(note)
    results = run_pilot(split, runs, out, params, plan.sweep, jobs=jobs, progress=progress)
    summary = summarize(results)
    views = None
    if OURS in chosen:
        from ..tabular import AttentionMoEClassifier

        clf = AttentionMoEClassifier.from_pretrained(
            out / "models" / "{}-seed{}".format(*EXPLAINED)
        )
        views = explain_views(clf, split, group, n_bootstrap=n_bootstrap)
    content = {
        "title": title or f"attnmoe pilot: {target} on {data_name}",
        "data": data_name,
        "target": target,
        "shift": split.description,
        "group": group,
        "features": split.features,
        "n_train": len(split.X_train),
        "n_new": len(split.X_test),
        "budget": budget,
        "seeds": n_seeds,
        "sweep": list(plan.sweep),
        "params": params or {},
        "notes": split.notes,
        "command": command,
        "machine": machine_description(),
        "summary": summary,
        "explain": None if views is None else views.numbers,
    }
    write_text_atomically(out / "pilot.json", json.dumps(json_safe(content), indent=2) + "\n")
    write_text_atomically(out / "pilot.html", pilot_html(content, views))
    return content


def read_pilot(folder: str | Path) -> dict[str, Any]:
    """A pilot's ``pilot.json`` (``folder`` may name the file itself)."""
    path = Path(folder)
    path = path / "pilot.json" if path.is_dir() else path
    if not path.is_file():
        raise ValueError(f"{folder}: no pilot.json there (run attnmoe pilot into it first)")
    try:
        content = json.loads(path.read_text())
        content["summary"]["models"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a pilot's pilot.json ({err})") from None
    return content


def _nan(value: Any) -> Any:
    """JSON's ``null`` back to NaN inside the numbers the page formats."""
    if isinstance(value, dict):
        return {k: _nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan(v) for v in value]
    return float("nan") if value is None else value


def compare(folders: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Write ``out/compare.html`` and ``out/compare.json``: the pilots side by side.

    Each pilot is named by its folder's name (made unique with its parent's).
    """
    pilots = [read_pilot(f) for f in folders]
    names = [Path(f).name or str(f) for f in folders]
    if len(set(names)) < len(names):
        names = [f"{Path(f).parent.name}/{Path(f).name}" for f in folders]
    for p in pilots:
        p["summary"]["gaps"] = _nan(p["summary"]["gaps"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    content = {"pilots": dict(zip(names, pilots, strict=True))}
    write_text_atomically(out / "compare.json", json.dumps(json_safe(content), indent=2) + "\n")
    write_text_atomically(out / "compare.html", compare_html(pilots, names))
    return content
