"""Run the paper's tabular experiments: our model and the baselines, side by side.

Every (dataset, seed, model) run is appended to a CSV as soon as it finishes, so
an interrupted benchmark loses nothing; a rerun skips runs already recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.model_selection import GridSearchCV
from tqdm.auto import tqdm

from ..tabular import AttentionMoEClassifier, AtypicalHoldout
from ..tabular.params import parse_estimator_params
from .baselines import BASELINES, make_baseline
from .datasets import SIMULATION_SEEDS, SIMULATION_SETTINGS, TabularSplit, load_auto_mpg
from .paper import load_paper_per_seed, load_paper_results

OURS = "attnmoe"
AUTO_MPG = "auto-mpg"
MODEL_NAMES = (OURS, *BASELINES)

#: The paper's configuration of attnmoe, pinned here so that the benchmark's numbers do
#: not follow the estimator's defaults: one BERT block of 5 heads of size 4, embedding
#: 20, feed-forward 5, dropout 0.1, Adam at 1e-3 on batches of 128 masked copies, 200
#: epochs and no cap on the steps (the default ``max_steps`` caps large tables), one
#: model, and a knot at every level of whole-number columns with up to 50 levels.
#: ``attnmoe_params`` given to the benchmark override these.
PAPER_PARAMS: dict[str, Any] = {
    "block": "bert",
    "n_heads": 5,
    "d_head": 4,
    "d_model": 20,
    "d_ff": 5,
    "n_layers": 1,
    "dropout": 0.1,
    "epochs": 200,
    "max_steps": None,
    "batch_size": 128,
    "masking": "copies",
    "learning_rate": 1e-3,
    "init": "keras",
    "n_ensembles": 1,
    "max_categories": 50,
}


@dataclass(frozen=True)
class Run:
    dataset: str  # a simulation setting name or "auto-mpg"
    seed: int
    model: str


def load_benchmark_data(dataset: str, seed: int) -> TabularSplit:
    """The train/test split of a benchmark dataset: a simulation setting name or "auto-mpg"."""
    if dataset == AUTO_MPG:
        return load_auto_mpg()
    for setting in SIMULATION_SETTINGS:
        if setting.name == dataset:
            return setting.make(seed)
    raise ValueError(f"unknown dataset {dataset!r}")


def make_model(
    name: str,
    seed: int,
    attnmoe_params: dict[str, Any] | None = None,
    attnmoe_search: dict[str, list] | None = None,
    holdout: float = 0.25,
):
    """An unfitted model of the benchmark by name, seeded; attnmoe in the paper's
    configuration (:data:`PAPER_PARAMS`) but for ``attnmoe_params``.

    With ``attnmoe_search`` (a parameter grid), attnmoe becomes a ``GridSearchCV``
    that chooses among the grid on the least typical ``holdout`` share of the
    training rows (:class:`~attnmoe.tabular.AtypicalHoldout`), then refits on all
    of them. Ties go to the grid's first value.
    """
    if name == OURS:
        params = {**PAPER_PARAMS, **(attnmoe_params or {})}
        model = AttentionMoEClassifier(random_state=seed, **params)
        if attnmoe_search:
            model = GridSearchCV(
                model, attnmoe_search, scoring="accuracy", cv=AtypicalHoldout(holdout),
                refit=True, error_score="raise",
            )  # fmt: skip
        return model
    return make_baseline(name, random_state=seed, n_jobs=1)


def run_one(
    run: Run,
    attnmoe_params: dict[str, Any] | None = None,
    attnmoe_search: dict[str, list] | None = None,
    unlabeled_test: bool = False,
) -> dict[str, Any]:
    """Fit one model on one dataset; accuracy and squared bin error on the shifted test split.

    ``unlabeled_test`` (transductive, attnmoe only): the test rows' features, never
    their labels, are also passed to ``fit`` as ``X_unlabeled``.
    """
    data = load_benchmark_data(run.dataset, run.seed)
    model = make_model(run.model, run.seed, attnmoe_params, attnmoe_search)
    extra = {"X_unlabeled": data.X_test} if unlabeled_test and run.model == OURS else {}
    start = time.perf_counter()
    model.fit(data.X_train, data.y_train, **extra)
    fit_seconds = time.perf_counter() - start
    predicted = np.asarray(model.predict(data.X_test)).astype(int)
    truth = data.y_test.to_numpy().astype(int)
    row = {
        "dataset": run.dataset,
        "seed": run.seed,
        "model": run.model,
        "test_accuracy": float(np.mean(predicted == truth)),
        "test_mse": float(np.mean((predicted - truth) ** 2)),
        "fit_seconds": fit_seconds,
    }
    if unlabeled_test:  # the run's protocol, on every row (baselines' too); a resume checks it
        row["attnmoe_unlabeled_test"] = True
    if attnmoe_search:  # every row of such a run has it, so the CSV's columns stay fixed
        chosen = getattr(model, "best_params_", None)
        row["chosen"] = json.dumps(chosen, sort_keys=True) if chosen is not None else ""
    return row


def plan_runs(
    settings: Sequence[str] | None, n_seeds: int, models: Sequence[str], auto_mpg_seeds: int
) -> list[Run]:
    """The runs of a benchmark: settings x seeds x models, then auto-mpg x seeds x models."""
    unknown = set(models) - set(MODEL_NAMES)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; choose from {list(MODEL_NAMES)}")
    if not 0 <= n_seeds <= len(SIMULATION_SEEDS):
        raise ValueError(
            f"seeds: the paper's simulation has {len(SIMULATION_SEEDS)} seeds, got {n_seeds}"
        )
    if auto_mpg_seeds < 0:
        raise ValueError(f"auto-mpg seeds must be >= 0, got {auto_mpg_seeds}")
    names = [s.name for s in SIMULATION_SETTINGS]
    chosen = names if settings is None else list(settings)
    for name in chosen:
        if name not in names:
            raise ValueError(f"unknown setting {name!r}; choose from {names}")
    models = list(dict.fromkeys(models))  # a model or setting named twice runs once
    chosen = list(dict.fromkeys(chosen))
    runs = [Run(s, seed, m) for s in chosen for seed in SIMULATION_SEEDS[:n_seeds] for m in models]
    runs += [Run(AUTO_MPG, seed, m) for seed in range(auto_mpg_seeds) for m in models]
    if not runs:
        raise ValueError("nothing to run: no settings, seeds or models chosen")
    return runs


def check_params_file(out_csv: Path, attnmoe_params: dict[str, Any] | None) -> None:
    """Keep attnmoe's fixed parameters beside ``out_csv``; refuse to resume with others.

    ``verbose`` is not a configuration and is left out.
    """
    params_file = out_csv.with_name(out_csv.stem + ".params.json")
    fixed = {k: v for k, v in (attnmoe_params or {}).items() if k != "verbose"}
    params_text = json.dumps(fixed, sort_keys=True)
    if params_file.exists() and params_file.read_text().strip() != params_text:
        raise ValueError(
            f"{out_csv} was written with --attnmoe-params {params_file.read_text().strip()}; "
            "resume it with the same parameters or use another output folder"
        )
    params_file.write_text(params_text + "\n")


def recorded_runs(out_csv: str | Path, columns: Sequence[str]) -> set[tuple[str, ...]]:
    """The runs already in ``out_csv``: their ``columns``' values, as strings."""
    out_csv = Path(out_csv)
    if not out_csv.exists():
        return set()
    done = pd.read_csv(out_csv, dtype=str, keep_default_na=False)
    if not len(done):
        return set()
    return set(done[list(columns)].itertuples(index=False, name=None))


def append_runs(
    tasks: Sequence[Any], out_csv: str | Path, jobs: int = 1, progress: bool = True
) -> None:
    """Run joblib ``delayed`` tasks, each returning one row (a dict), ``jobs`` at a time;
    append every row to ``out_csv`` as soon as its run finishes (the header with the first)."""
    out_csv = Path(out_csv)
    bar = tqdm(total=len(tasks), desc="runs", unit="fit", disable=not progress)
    for row in Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks):
        pd.DataFrame([row]).to_csv(out_csv, mode="a", header=not out_csv.exists(), index=False)
        bar.update(1)
    bar.close()


def run_benchmark(
    runs: Iterable[Run],
    out_csv: str | Path,
    jobs: int = 1,
    attnmoe_params: dict[str, Any] | None = None,
    progress: bool = True,
    attnmoe_search: dict[str, list] | None = None,
    unlabeled_test: bool = False,
) -> pd.DataFrame:
    """Run (or resume) a benchmark, appending each finished run to ``out_csv``.

    ``unlabeled_test``: attnmoe also trains on the test rows' features (not their
    labels; see :func:`run_one`), a transductive protocol the baselines do not use.
    """
    runs = list(dict.fromkeys(runs))
    if not runs:
        raise ValueError("nothing to run: no settings, seeds or models chosen")
    if unlabeled_test and attnmoe_search:
        raise ValueError("unlabeled test rows cannot be combined with a parameter search")
    if unlabeled_test and not any(r.model == OURS for r in runs):
        raise ValueError(f"unlabeled test rows are for {OURS}, which is not among the models")
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(out_csv) if out_csv.exists() else pd.DataFrame()
    if len(done.columns) and ("attnmoe_unlabeled_test" in done.columns) != unlabeled_test:
        raise ValueError(
            f"{out_csv} was written "
            f"{'with' if 'attnmoe_unlabeled_test' in done.columns else 'without'} unlabeled "
            "test rows; "
            "resume it the same way or use another output folder"
        )
    if len(done.columns) and ("chosen" in done.columns) != bool(attnmoe_search):
        raise ValueError(
            f"{out_csv} was written {'with' if 'chosen' in done.columns else 'without'} a "
            "parameter search; resume it the same way or use another output folder"
        )
    if attnmoe_search:  # the grid is kept beside the runs: a resume must use the same one
        grid_file = out_csv.with_name(out_csv.stem + ".search.json")
        if grid_file.exists() and json.loads(grid_file.read_text()) != attnmoe_search:
            raise ValueError(
                f"{out_csv} was written with the search grid {grid_file.read_text().strip()}; "
                "resume it with the same grid or use another output folder"
            )
        grid_file.write_text(json.dumps(attnmoe_search, sort_keys=True) + "\n")
    # so are the fixed parameters: one runs.csv, one configuration (folders written
    # before this file existed cannot be checked)
    check_params_file(out_csv, attnmoe_params)
    seen = recorded_runs(out_csv, ["dataset", "seed", "model"])
    todo = [r for r in runs if (r.dataset, str(r.seed), r.model) not in seen]
    tasks = [delayed(run_one)(r, attnmoe_params, attnmoe_search, unlabeled_test) for r in todo]
    append_runs(tasks, out_csv, jobs=jobs, progress=progress)
    # the planned runs only (a folder may hold others), each once
    results = pd.read_csv(out_csv).drop_duplicates(["dataset", "seed", "model"], keep="first")
    planned = {(r.dataset, r.seed, r.model) for r in runs}
    keys = zip(results["dataset"], results["seed"].astype(int), results["model"], strict=True)
    return results[[key in planned for key in keys]].reset_index(drop=True)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of accuracy, MSE and fit time per dataset and model."""
    grouped = results.groupby(["dataset", "model"], sort=False)
    summary = grouped.agg(
        n_runs=("seed", "count"),
        accuracy_mean=("test_accuracy", "mean"),
        accuracy_sd=("test_accuracy", "std"),
        mse_mean=("test_mse", "mean"),
        mse_sd=("test_mse", "std"),
        fit_seconds=("fit_seconds", "mean"),
    )
    return summary.reset_index()


PAPER_PER_SEED_CODES = {
    "at": "paper attention",
    "lr": "logistic_regression",
    "rf": "random_forest",
    "gb": "gradient_boosting",
    "mlp": "mlp",
}


def _paper_on_seeds(dataset: str, seeds: Sequence[int], metric: str = "acc") -> dict[str, float]:
    """The paper's per-seed test ``metric`` ("acc" or "mse") per model, averaged over exactly
    ``seeds`` (same data); empty unless the paper has every one of them."""
    per_seed = load_paper_per_seed(dataset)
    rows = per_seed[per_seed["seed"].isin(list(seeds))]
    if len(rows) != len(set(seeds)):
        return {}
    codes = PAPER_PER_SEED_CODES.items()
    return {name: float(rows[f"{metric}_test_{code}"].mean()) for code, name in codes}


def at_least(ours: float, other: float) -> bool:
    """``ours >= other`` at the paper's precision, 4 decimals (107/140 = 0.764286 ties
    the published 0.7643): how every win count here compares accuracies."""
    return round(ours, 4) >= round(other, 4)


def _published(dataset: str, metric: str) -> pd.Series:
    """The paper's published mean of ``metric`` ("test_accuracy"/"test_mse") per model."""
    setting = "train origin=USA, test origin=Europe+Japan" if dataset == AUTO_MPG else dataset
    paper = load_paper_results()
    rows = paper[(paper["setting"] == setting) & (paper["metric"] == metric)]
    return rows.set_index("model")["mean"]


def _mean_sd(mean: float, sd: float, n: int, digits: int = 3) -> str:
    spread = "" if np.isnan(sd) else f" ± {sd:.{digits}f}"
    return f"{mean:.{digits}f}{spread} (n={n})"


@dataclass
class _Reference:
    """The paper's numbers a dataset's runs are read against, for one metric."""

    attention: float | None  # on the same seeds; auto-mpg: the one published run
    baselines: dict[str, float]  # the same; auto-mpg: every published baseline
    attention_published: float | None  # the paper's 20-seed mean (simulation)
    same_seeds: bool


def _reference(results: pd.DataFrame, dataset: str, metric: str) -> _Reference:
    published = _published(dataset, {"acc": "test_accuracy", "mse": "test_mse"}[metric])
    attention_published = published.get("attention")
    if dataset == AUTO_MPG:  # one published run (seed 42): no per-seed results
        baselines = {k: float(v) for k, v in published.items() if k != "attention"}
        return _Reference(attention_published, baselines, attention_published, False)
    mine = results[(results["dataset"] == dataset) & (results["model"] == OURS)]
    runs = mine if len(mine) else results[results["dataset"] == dataset]
    seeds = runs["seed"].drop_duplicates().tolist()  # attnmoe's seeds, else the run's
    same = _paper_on_seeds(dataset, seeds, metric) if seeds else {}
    attention = same.pop("paper attention", None)
    return _Reference(attention, same, attention_published, True)


def _best(reference: _Reference, lower_is_better: bool = False) -> str:
    if not reference.baselines:
        return "-"
    pick = min if lower_is_better else max
    name = pick(reference.baselines, key=reference.baselines.get)
    where = "" if reference.same_seeds else ", published"
    return f"{reference.baselines[name]:.3f} ({name}{where})"


def markdown_report(results: pd.DataFrame, command: str = "") -> str:
    """Mean ± sd per dataset and model, next to the paper's numbers, with win counts.

    For the simulation the paper's per-seed results are averaged over the seeds
    that were run, so both sides are scored on identical data; the paper's
    20-seed means are shown too. auto-mpg is read against the paper's one
    published run. Three tables: test accuracy, test MSE of the predicted bin,
    and the paper's accuracy for every model it reports; then the win counts,
    simulation and auto-mpg apart.
    """
    summary = summarize(results)
    present = set(summary["model"])
    models = [m for m in MODEL_NAMES if m in present]  # ours first, then the baselines
    datasets = list(dict.fromkeys(summary["dataset"]))
    refs = {(d, m): _reference(results, d, m) for d in datasets for m in ("acc", "mse")}
    lines = [f"Command: `{command}`", ""] if command else []
    if "attnmoe_unlabeled_test" in results.columns:
        lines += [
            "Transductive: attnmoe also trained on the test rows' features (never their "
            "labels) as `X_unlabeled`; the baselines and the paper did not.",
            "",
        ]

    def table(metric: str, title: str) -> list[str]:
        header = ["dataset", *models, "paper attention (same seeds)"]
        header += ["paper best baseline (same seeds)", "paper attention (published)"]
        out = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for dataset in datasets:
            rows = summary[summary["dataset"] == dataset].set_index("model")
            cells = [dataset]
            for m in models:
                if m in rows.index:
                    r = rows.loc[m]
                    mean, sd = r[f"{metric}_mean"], r[f"{metric}_sd"]
                    cells.append(_mean_sd(mean, sd, int(r.n_runs)))
                else:
                    cells.append("-")
            ref = refs[dataset, "acc" if metric == "accuracy" else "mse"]
            same = ref.attention if ref.same_seeds else None
            cells.append("-" if same is None else f"{same:.3f}")
            cells.append(_best(ref, lower_is_better=metric == "mse"))
            published = ref.attention_published
            cells.append("-" if published is None else f"{published:.3f}")
            out.append("| " + " | ".join(cells) + " |")
        return out

    lines += table("accuracy", "Test accuracy, mean ± sd over seeds:")
    lines += [
        "",
        "Mean fit time per model (s): "
        + ", ".join(
            f"{m} {summary[summary['model'] == m]['fit_seconds'].mean():.2f}" for m in models
        ),
        "",
    ]
    lines += table(
        "mse",
        "Test MSE of the predicted bin index, mean ± sd over seeds (lower is better; the "
        "best baseline is the one with the lowest MSE):",
    )

    # the paper's own numbers for every model it reports on these datasets
    paper_rows, paper_models = [], list(dict.fromkeys(["attention", *MODEL_NAMES[1:]]))
    for dataset in datasets:
        ref = refs[dataset, "acc"]
        values = dict(ref.baselines)
        if ref.attention is not None:
            values["attention"] = ref.attention
        paper_rows.append((dataset, values))
        paper_models += [m for m in values if m not in paper_models]
    paper_models = [m for m in paper_models if any(m in v for _, v in paper_rows)]
    lines += [
        "",
        "The paper's test accuracy for every model it reports (simulation: its per-seed "
        "results averaged over the same seeds; auto-mpg: its one published run):",
        "",
        "| dataset | " + " | ".join(paper_models) + " |",
        "|" + "---|" * (len(paper_models) + 1),
    ]
    for dataset, values in paper_rows:
        cells = [f"{values[m]:.3f}" if m in values else "-" for m in paper_models]
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")

    if "chosen" in results.columns:
        chosen = results[results["model"] == OURS]
        lines += ["", "Settings chosen on the least typical training rows (runs per choice):", ""]
        for dataset, group in chosen.groupby("dataset", sort=False):
            counts = group["chosen"].fillna("none").value_counts()  # most chosen first
            lines.append(f"- {dataset}: " + "; ".join(f"{k}: {v}" for k, v in counts.items()))
    lines += _win_counts(summary, {d: refs[d, "acc"] for d in datasets})
    return "\n".join(lines) + "\n"


def _win_counts(summary: pd.DataFrame, refs: dict[str, _Reference]) -> list[str]:
    """attnmoe's mean accuracy against the paper's attention and every baseline (ours and
    the paper's), counted over the simulation settings; auto-mpg on its own line.
    ``refs``: each dataset's accuracy reference, in report order."""
    wins_vs_paper = wins_vs_best = n_sets = 0
    lines: list[str] = []
    uncounted = []  # simulation settings run on seeds the paper has no results for
    for dataset, ref in refs.items():
        rows = summary[summary["dataset"] == dataset].set_index("model")
        if OURS not in rows.index:
            continue
        ours = rows.loc[OURS].accuracy_mean
        others = {m: rows.loc[m].accuracy_mean for m in rows.index if m != OURS}
        others |= {f"{m} (paper)": v for m, v in ref.baselines.items()}
        best = max(others, key=others.get) if others else None
        if dataset == AUTO_MPG:
            if ref.attention is None:
                continue
            sign = ">=" if at_least(ours, ref.attention) else "<"
            text = f"auto-mpg: attnmoe {ours:.4f} {sign} the paper's one run {ref.attention:.4f}"
            if best is not None:
                sign = ">=" if at_least(ours, others[best]) else "<"
                text += f"; {sign} the best baseline, {best} {others[best]:.4f}"
            lines.append(text + ".")
        elif ref.attention is not None:
            n_sets += 1
            wins_vs_paper += at_least(ours, ref.attention)
            wins_vs_best += best is not None and at_least(ours, others[best])
        else:
            uncounted.append(dataset)
    if n_sets:
        lines.insert(
            0,
            f"Simulation: attnmoe mean accuracy >= the paper's attention in {wins_vs_paper} of "
            f"{n_sets} settings, and >= every baseline (ours and the paper's) in "
            f"{wins_vs_best} of {n_sets}.",
        )
    if uncounted:
        lines.append(
            "Not counted (run on seeds the paper has no per-seed results for): "
            + ", ".join(uncounted)
            + "."
        )
    if lines:
        lines = ["", "Win counts (accuracy, compared at the paper's 4 decimals):", ""] + [
            f"- {line}" for line in lines
        ]
    return lines


def parse_params(
    text: str | None, option: str = "--attnmoe-params", grid: bool = False
) -> dict[str, Any]:
    """``--attnmoe-params`` JSON, e.g. ``'{"n_ensembles": 5}'``."""
    params = parse_estimator_params(text, option, AttentionMoEClassifier, grid=grid)
    if "random_state" in params:
        raise ValueError(f"{option}: random_state is set by the benchmark, one per seed")
    return params


def parse_search(text: str | None) -> dict[str, list]:
    """``--attnmoe-search`` JSON: a grid, each parameter a non-empty list of values."""
    grid = parse_params(text, "--attnmoe-search", grid=True)
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"--attnmoe-search: {name!r} needs a non-empty list of values")
    return grid
