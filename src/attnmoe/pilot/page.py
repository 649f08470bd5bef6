"""The pilot's page, ``pilot.html``, and the page that compares pilots.

Built from the report's parts (:mod:`attnmoe.explain.pages`: the autoescaped
templates ``pilot.html.j2`` and ``pilot_compare.html.j2`` beside the report's,
its macros and style; :mod:`attnmoe.explain.plots` for the expert views). The
page is self-contained: plots are PNG ``data:`` URIs, no network is used. Every
number of ``pilot.json`` shown on the page sits in an element with a
``data-value`` attribute holding it unrounded, so a machine can check the page
against the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..explain import plots
from ..explain.pages import Kpi, render, table
from .results import COSTS, METRICS, ExplainViews

__all__ = ["compare_html", "effect_cost_chart", "gap_chart", "pilot_html"]

_COLOURS = {"attnmoe": "C3", "transductive": "C1", "alternative": "C0", "floor": "grey"}


def effect_cost_chart(models: dict[str, dict[str, Any]]) -> str:
    """Accuracy on the new rows against fit time (log scale), mean ± sd over seeds; the
    majority-class floor is left out (it is in the tables)."""
    fig, ax = plots.figure(7.5, 4.6)
    for name, m in models.items():
        if m["kind"] == "floor":  # far below the others: it would squash their differences
            continue
        x, y = m["fit_seconds"]["mean"], m["accuracy"]["mean"]
        xerr, yerr = (np.nan_to_num(m[k]["sd"]) for k in ("fit_seconds", "accuracy"))
        colour = _COLOURS[m["kind"]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=colour, capsize=3, ms=7)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("fit time per model (s, log scale): cost")
    ax.set_ylabel("accuracy on the new rows: effect")
    ax.set_title("Effect against cost (mean ± sd over seeds); up and left is better")
    ax.grid(alpha=0.3)
    return plots.png(fig)


def gap_chart(names: list[str], gaps: list[float], ses: list[float]) -> str:
    """attnmoe's accuracy gap to the best alternative per pilot, ± 2 paired SE."""
    fig, ax = plots.figure(7.5, 1.2 + 0.6 * len(names))
    y = np.arange(len(names))
    colours = ["C2" if g >= 0 else "C3" for g in gaps]
    ax.barh(y, 100 * np.asarray(gaps), xerr=200 * np.nan_to_num(ses), color=colours, capsize=4)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(y, plots._labels(names))
    ax.invert_yaxis()
    ax.set_xlabel("attnmoe − best alternative (accuracy points, ± 2 SE)")
    ax.set_title("Per use case: above or below what you would otherwise use")
    return plots.png(fig)


def _kpis(pilot: dict[str, Any]) -> list[Kpi]:
    summary = pilot["summary"]
    gaps = {g["model"]: g for g in summary["gaps"]}
    kpis = [
        Kpi("n-train", pilot["n_train"], f"{pilot['n_train']:,}", "training rows"),
        Kpi("n-new", pilot["n_new"], f"{pilot['n_new']:,}", "new rows scored"),
    ]
    if (g := gaps.get("attnmoe")) is not None:
        se = "" if np.isnan(g["se"]) else f" ± {100 * g['se']:.1f}"
        kpis += [
            Kpi(
                "gap",
                g["gap"],
                f"{100 * g['gap']:+.1f}{se}",
                "accuracy points vs best",
                f"attnmoe − {g['versus']}",
            ),
            Kpi(
                "gap-se",
                g["se"],
                f"{100 * g['se']:.1f}",
                "paired SE (points)",
                f"over {g['seeds']} seeds",
            ),
            Kpi(
                "fit-time-ratio",
                g["fit_time_ratio"],
                f"{g['fit_time_ratio']:.1f}×",
                "training time",
                f"attnmoe / {g['versus']}",
            ),
        ]
    return kpis


def _model_rows(models: dict[str, dict[str, Any]], columns: dict[str, Any]) -> list[dict]:
    rows = []
    for name, m in models.items():
        cells = []
        for key in columns:
            mean, sd = m[key]["mean"], m[key]["sd"]
            if key == "size_bytes":
                shown = f"{mean / 1024:,.1f} KiB"
            else:
                shown = f"{mean:.3f}" if abs(mean) < 100 else f"{mean:,.0f}"
                shown += "" if np.isnan(sd) else f" ± {sd:.3f}"
            cells.append({"metric": key, "value": mean, "shown": shown})
        rows.append({"model": name, "kind": m["kind"], "cells": cells})
    return rows


def _group_rows(models: dict[str, dict[str, Any]]) -> tuple[list[str], list[dict]]:
    groups = sorted({g for m in models.values() for g in m.get("group_accuracy", {})})
    rows = [
        {"model": name, "cells": [(g, m.get("group_accuracy", {}).get(g)) for g in groups]}
        for name, m in models.items()
    ]
    return groups, rows


def _view_plots(views: ExplainViews) -> dict[str, str]:
    shift = views.on_train.shift
    drawn = {
        "usage": plots.heatmap(
            views.on_new.usage_by_class.T,
            "Expert usage on the new rows, by predicted class",
            "predicted class",
            "column",
        ),
        "shift": plots.shift_bars(shift.before, shift.after, ("training rows", "new rows")),
    }
    if (a := views.on_new.accuracy) is not None:
        drawn["reliability"] = plots.reliability(a.reliability, a.n_labelled)
    if views.on_new.groups is not None:
        drawn["groups"] = plots.heatmap(
            views.on_new.groups.usage.T, "Expert usage by group (new rows)", "group", "column"
        )
    return drawn


def pilot_html(pilot: dict[str, Any], views: ExplainViews | None) -> str:
    """The page of one pilot (``pilot`` as written to ``pilot.json``)."""
    summary = pilot["summary"]
    groups, group_rows = _group_rows(summary["models"])
    result = None if views is None or views.on_new.groups is None else views.on_new.groups.result
    return render(
        "pilot.html.j2",
        title=pilot["title"],
        p=pilot,
        s=summary,
        numbers_shown=_kpis(pilot),
        chart=effect_cost_chart(summary["models"]),
        metrics=METRICS,
        costs=COSTS,
        effect_rows=_model_rows(summary["models"], METRICS),
        cost_rows=_model_rows(summary["models"], COSTS),
        groups=groups,
        group_rows=group_rows,
        views=views,
        view_plots=None if views is None else _view_plots(views),
        moved_table=None if views is None else table(views.on_train.shift.moved),
        usage_table=None if views is None else table(views.on_new.usage),
        audit_rows=None if result is None else result.gaps.to_dict("records"),
    )


def compare_html(pilots: list[dict[str, Any]], names: list[str]) -> str:
    """One page with the pilots side by side (each as read from its ``pilot.json``)."""
    rows = []
    for name, pilot in zip(names, pilots, strict=True):
        summary = pilot["summary"]
        gap = next((g for g in summary["gaps"] if g["model"] == "attnmoe"), None)
        models = summary["models"]
        best = summary["best_alternative"]
        rows.append(
            {
                "name": name,
                "title": pilot["title"],
                "shift": pilot["shift"],
                "gap": gap,
                "verdict": summary["verdict"][0] if summary["verdict"] else "",
                "attnmoe": models.get("attnmoe", {}).get("accuracy", {}).get("mean"),
                "best": best,
                "best_accuracy": models[best]["accuracy"]["mean"] if best else None,
                "n_new": pilot["n_new"],
            }
        )
    shown = [r for r in rows if r["gap"] is not None]
    chart = gap_chart(
        [r["name"] for r in shown],
        [r["gap"]["gap"] for r in shown],
        [r["gap"]["se"] for r in shown],
    )
    return render(
        "pilot_compare.html.j2",
        title=f"attnmoe pilots compared ({len(rows)} use cases)",
        rows=rows,
        chart=chart,
        numbers_shown=[],
    )
