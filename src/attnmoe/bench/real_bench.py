"""The real-table shift benchmark (``attnmoe bench real``, issue 27).

Every (table, seed, model, protocol) run fits one model on the training rows of
a :mod:`~attnmoe.bench.real_tables` split and scores it on the shifted test
rows: accuracy, macro-F1 and fit time. Runs are appended to ``runs.csv`` as they
finish and a rerun skips those recorded (the machinery of
:mod:`attnmoe.bench.runner`). Two protocols, kept apart in every table:

- ``inductive``: the model sees the training rows only (every model);
- ``transductive``: attnmoe also trains on the test rows' features, never their
  labels, as ``X_unlabeled`` (only models that can use unlabeled rows run it).

Every model keeps its library's defaults, but ``attnmoe_tuned``: attnmoe with the
candidate of :data:`TUNED_GRID` that scores best on the least typical quarter of the
table's training rows (:class:`~attnmoe.tabular.AtypicalHoldout`), refit on all of
them. Nothing is tuned on test rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import delayed
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV

from ..tabular import AttentionMoEClassifier, AtypicalHoldout
from .baselines import MIXED_BASELINES, make_mixed_baseline
from .real_tables import REAL_TABLES, SPLIT_VARIABLES, load_real_table, shift_facts
from .runner import append_runs, check_params_file, recorded_runs

__all__ = [
    "PROTOCOLS",
    "REAL_MODELS",
    "RealRun",
    "plan_real_runs",
    "real_markdown_report",
    "run_real_benchmark",
    "run_real_one",
    "suite_facts",
]

OURS = "attnmoe"
TUNED = "attnmoe_tuned"
#: attnmoe's variants: never a baseline of the summary's gaps
OUR_MODELS = (OURS, TUNED)
#: attnmoe (defaults), attnmoe tuned, then the baselines of
#: :data:`~attnmoe.bench.baselines.MIXED_BASELINES`
REAL_MODELS = (*OUR_MODELS, *MIXED_BASELINES)
#: ``attnmoe_tuned``'s candidates, the defaults first (ties go to it): the knot settings
#: that rounds 3-4 of benchmarks/select_real_defaults.py compared over the whole pool,
#: chosen here per table
TUNED_GRID: list[dict[str, list]] = [
    {"max_categories": [10], "n_bins": [10]},
    {"max_categories": [5], "n_bins": [5]},
    {"max_categories": [50], "n_bins": [10]},
]
PROTOCOLS = ("inductive", "transductive")
#: the models that can learn from rows without a label (``fit(..., X_unlabeled=...)``)
UNLABELED_MODELS = frozenset({OURS})
_KEY = ["table", "seed", "model", "protocol"]


@dataclass(frozen=True)
class RealRun:
    table: str
    seed: int
    model: str
    protocol: str = "inductive"


def plan_real_runs(
    tables: Sequence[str] | None,
    models: Sequence[str],
    n_seeds: int = 5,
    protocols: Sequence[str] = PROTOCOLS,
) -> list[RealRun]:
    """Tables x seeds ``0..n_seeds-1`` x models, per protocol (transductive: attnmoe only).

    Parameters
    ----------
    tables : sequence of str or None
        Keys of :data:`~attnmoe.bench.real_tables.REAL_TABLES`; ``None``: all.
    models : sequence of str
        Names of :data:`REAL_MODELS`.
    n_seeds : int, default 5
        Seeds per model.
    protocols : sequence of str
        ``"inductive"`` and/or ``"transductive"``.

    Returns
    -------
    list of RealRun
    """
    chosen = list(REAL_TABLES) if tables is None else list(dict.fromkeys(tables))
    for name, known, what in (
        *((t, REAL_TABLES, "table") for t in chosen),
        *((m, REAL_MODELS, "model") for m in models),
        *((p, PROTOCOLS, "protocol") for p in protocols),
    ):
        if name not in known:
            raise ValueError(f"unknown {what} {name!r}; choose from {list(known)}")
    if n_seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {n_seeds}")
    models = list(dict.fromkeys(models))
    runs = [
        RealRun(t, seed, m, p)
        for t in chosen
        for seed in range(n_seeds)
        for p in dict.fromkeys(protocols)
        for m in models
        if p == "inductive" or m in UNLABELED_MODELS
    ]
    if not runs:
        raise ValueError("nothing to run: the transductive protocol is for attnmoe only")
    return runs


def _model(run: RealRun, attnmoe_params: dict[str, Any] | None) -> Any:
    if run.model not in OUR_MODELS:
        return make_mixed_baseline(run.model, random_state=run.seed, n_jobs=1)
    ours = AttentionMoEClassifier(random_state=run.seed, **(attnmoe_params or {}))
    if run.model == OURS:
        return ours
    return GridSearchCV(
        ours, TUNED_GRID, scoring="accuracy", cv=AtypicalHoldout(0.25), error_score="raise"
    )


def run_real_one(run: RealRun, attnmoe_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit one model on one table's training rows; its scores on the test rows."""
    data = load_real_table(run.table)
    model = _model(run, attnmoe_params)
    extra = {"X_unlabeled": data.X_test} if run.protocol == "transductive" else {}
    start = time.perf_counter()
    model.fit(data.X_train, data.y_train, **extra)
    fit_seconds = time.perf_counter() - start
    predicted = np.asarray(model.predict(data.X_test)).astype(str)
    truth = data.y_test.to_numpy().astype(str)
    return {
        "table": run.table,
        "seed": run.seed,
        "model": run.model,
        "protocol": run.protocol,
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "fit_seconds": fit_seconds,
    }


def run_real_benchmark(
    runs: Sequence[RealRun],
    out_csv: str | Path,
    jobs: int = 1,
    attnmoe_params: dict[str, Any] | None = None,
    progress: bool = True,
    fit: bool = True,
) -> pd.DataFrame:
    """Run (or resume) the benchmark, appending each finished run to ``out_csv``.

    ``fit=False`` runs nothing: the planned runs already recorded are returned (to
    summarise a run still in progress elsewhere, or one left unfinished).

    Returns
    -------
    DataFrame
        The planned runs' rows of ``out_csv`` (a folder may hold others), each once.

    Raises
    ------
    ValueError
        ``fit=False`` and none of the planned runs is recorded.
    """
    runs = list(dict.fromkeys(runs))
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    check_params_file(out_csv, attnmoe_params)  # one runs.csv, one attnmoe configuration
    seen = recorded_runs(out_csv, _KEY)
    todo = [r for r in runs if (r.table, str(r.seed), r.model, r.protocol) not in seen]
    if fit:
        tasks = [delayed(run_real_one)(r, attnmoe_params) for r in todo]
        append_runs(tasks, out_csv, jobs, progress)
    elif len(todo) == len(runs):
        raise ValueError(f"none of the planned runs is recorded in {out_csv}")
    results = pd.read_csv(out_csv).drop_duplicates(_KEY, keep="first")
    planned = {(r.table, r.seed, r.model, r.protocol) for r in runs}
    keys = results[_KEY].itertuples(index=False, name=None)
    return results[[(t, int(s), m, p) in planned for t, s, m, p in keys]].reset_index(drop=True)


def suite_facts(tables: Sequence[str], cache_csv: str | Path | None = None) -> pd.DataFrame:
    """:func:`~attnmoe.bench.real_tables.shift_facts` of ``tables`` (seed 0), one row each.

    With ``cache_csv``, facts already there are read back and new ones added to it.
    """
    cache = Path(cache_csv) if cache_csv is not None else None
    known = pd.read_csv(cache, index_col=0) if cache is not None and cache.exists() else None
    rows = {}
    for name in tables:
        if known is not None and name in known.index:
            rows[name] = known.loc[name].to_dict()
        else:
            rows[name] = shift_facts(load_real_table(name), 0, SPLIT_VARIABLES.get(name))
    facts = pd.DataFrame.from_dict(rows, orient="index")
    if cache is not None:
        merged = facts if known is None else pd.concat([known, facts]).groupby(level=0).last()
        merged.to_csv(cache)
    return facts


def _mean_sd(values: pd.Series) -> str:
    sd = values.std()
    return f"{values.mean():.3f}" + ("" if np.isnan(sd) else f" ± {sd:.3f}")


def _score_table(results: pd.DataFrame, metric: str, models: list[str]) -> list[str]:
    # a cell with fewer runs than the fullest cell says how many it has (n=)
    full = results.groupby(["table", "model", "protocol"]).size().max()
    inductive = results[results["protocol"] == "inductive"]
    transductive = results[results["protocol"] == "transductive"]
    trans_models = [m for m in models if m in set(transductive["model"])]
    header = ["table", *models, *(f"{m} (transductive)" for m in trans_models)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for table in dict.fromkeys(results["table"]):
        cells = [table]
        for frame, names in ((inductive, models), (transductive, trans_models)):
            for m in names:
                values = frame[(frame["table"] == table) & (frame["model"] == m)][metric]
                n = f" (n={len(values)})" if 0 < len(values) < full else ""
                cells.append(_mean_sd(values) + n if len(values) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _gaps(results: pd.DataFrame) -> list[str]:
    """attnmoe's mean accuracy minus the best baseline's (inductive), with the paired
    standard error over the seeds both ran; per protocol of attnmoe."""
    inductive = results[results["protocol"] == "inductive"]
    baselines = inductive[~inductive["model"].isin(OUR_MODELS)]
    lines = [
        "| table | best baseline (inductive) | protocol | attnmoe − best | paired SE | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for table in dict.fromkeys(results["table"]):
        mine = baselines[baselines["table"] == table]
        if not len(mine):
            continue
        means = mine.groupby("model")["accuracy"].mean()
        best = str(means.idxmax())
        best_by_seed = mine[mine["model"] == best].set_index("seed")["accuracy"]
        for model, protocol, label in _VARIANTS:
            ours = results[
                (results["table"] == table)
                & (results["model"] == model)
                & (results["protocol"] == protocol)
            ].set_index("seed")["accuracy"]
            seeds = ours.index.intersection(best_by_seed.index)
            if not len(seeds):
                continue
            diff = ours[seeds] - best_by_seed[seeds]
            se = diff.std() / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            lines.append(
                f"| {table} | {best} {means[best]:.3f} | {label} | {diff.mean():+.3f} "
                f"| {'-' if np.isnan(se) else f'{se:.3f}'} | {len(diff)} |"
            )
    return lines if len(lines) > 2 else ["attnmoe and a baseline were not both run."]


#: attnmoe's runs set against the baselines: (model, protocol, how the summary names it)
_VARIANTS = (
    (OURS, "inductive", "inductive"),
    (OURS, "transductive", "transductive"),
    (TUNED, "inductive", "tuned, inductive"),
)

#: CatBoost's seed sd is floored at this in the spread ratio (it is 0 on some tables)
_SD_FLOOR = 0.005


def _suite_lines(results: pd.DataFrame) -> list[str]:
    """Over the suite, per attnmoe protocol: tables where attnmoe's mean accuracy is at or
    above the best baseline's, within 0.01 of it, the mean gap; and attnmoe's seed sd
    against CatBoost's (inductive)."""
    inductive = results[results["protocol"] == "inductive"]
    means = inductive.groupby(["table", "model"])["accuracy"].mean().unstack()
    if not any(m in means for m in OUR_MODELS) or means.shape[1] < 2:
        return []
    best = means.drop(columns=[m for m in OUR_MODELS if m in means]).max(axis=1)
    lines = []
    for model, protocol, label in _VARIANTS:
        ours = results[(results["model"] == model) & (results["protocol"] == protocol)]
        gap = (ours.groupby("table")["accuracy"].mean() - best).dropna()
        if len(gap):
            lines.append(
                f"- {label}: attnmoe at or above the best baseline on {int((gap >= 0).sum())} "
                f"of {len(gap)} tables, within 0.01 on {int((gap >= -0.01).sum())}, mean gap "
                f"{gap.mean():+.3f}"
            )
    lines += _spread_lines(inductive.groupby(["table", "model"])["accuracy"].std().unstack())
    return ["", "Over the suite:", "", *lines] if lines else []


def _spread_lines(sds: pd.DataFrame) -> list[str]:
    """attnmoe's seed sd against CatBoost's, from the sd per table (rows) and model."""
    if "catboost" not in sds or OURS not in sds:
        return []
    if sds[OURS].isna().all():
        return ["- seed-to-seed sd: needs at least two seeds (--seeds)"]
    ratio = (sds[OURS] / sds["catboost"].clip(lower=_SD_FLOOR)).dropna()
    return [
        f"- seed-to-seed sd (inductive), mean over tables: attnmoe {sds[OURS].mean():.3f}, "
        f"CatBoost {sds['catboost'].mean():.3f}; their ratio per table (CatBoost's sd "
        f"floored at {_SD_FLOOR}): mean {ratio.mean():.1f}, median {ratio.median():.1f}"
    ]


def real_markdown_report(
    results: pd.DataFrame, facts: pd.DataFrame | None = None, command: str = ""
) -> str:
    """The summary: accuracy and macro-F1 mean ± sd over seeds per table and model (the
    transductive runs in their own columns), fit times, attnmoe's gap to the best baseline
    with its paired standard error, and the shift facts of each table."""
    present = set(results["model"])
    models = [m for m in REAL_MODELS if m in present]
    lines = [f"Command: `{command}`", ""] if command else []
    lines += [
        "Inductive: every model trains on the training rows only. Transductive columns: "
        "attnmoe also trains on the test rows' features (never their labels) as "
        "`X_unlabeled`; they are another protocol, not a competitor of the other columns. "
        "Every model keeps its library's defaults. Rules of the splits: "
        "benchmarks/results/real_tables/RULES.md.",
        "",
        "Test accuracy, mean ± sd over seeds:",
        "",
        *_score_table(results, "accuracy", models),
        "",
        "Test macro-F1, mean ± sd over seeds:",
        "",
        *_score_table(results, "macro_f1", models),
        "",
        "Mean fit time (s):",
        "",
        *_score_table(results, "fit_seconds", models),
        "",
        "attnmoe's mean test accuracy minus the best baseline's (best by mean inductive "
        "accuracy), with the standard error of the per-seed differences:",
        "",
        *_gaps(results),
        *_suite_lines(results),
    ]
    if facts is not None and len(facts):
        lines += ["", "Shift facts (no attnmoe involved; see shift.md for their definitions):", ""]
        lines += [
            "| table | train rows | test rows | domain AUC | domain AUC without the split "
            "variable | label shift (TV) | majority accuracy |",
            "|" + "---|" * 7,
        ]
        for name, r in facts.iterrows():
            lines.append(
                f"| {name} | {int(r['train_rows'])} | {int(r['test_rows'])} "
                f"| {r['domain_auc']:.3f} | {r['domain_auc_without_split']:.3f} "
                f"| {r['label_shift']:.3f} | {r['majority_accuracy']:.3f} |"
            )
    return "\n".join(lines) + "\n"
