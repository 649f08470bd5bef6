"""Cost knobs benchmark: what sparse gating, heads and layers cost, and what they buy.

``attnmoe bench cost`` fits :class:`~attnmoe.tabular.AttentionMoEClassifier`
over a grid of the model's cost knobs (``top_k`` sparse gating, ``n_heads``,
``n_layers``; ``window`` only matters for text and is left out) on the paper's
tabular simulation and on auto-mpg, and records for every (knobs, dataset,
seed) run:

- fit time and predict time (``time.perf_counter`` around ``fit`` and
  ``predict`` on the shifted test split);
- peak memory: every run happens in a *fresh* worker process (``spawn``, one
  task per process), and the process's resident-set high-water mark
  (``resource.getrusage(...).ru_maxrss``) is read before the fit, after the fit
  and after prediction. ``tracemalloc`` would miss torch's C++ allocations and
  torch's allocator statistics exist only for CUDA, so RSS is the honest CPU
  measure; ``fit_rss_increase_mb`` (peak after the fit minus the level after
  imports and data loading) isolates what the fit itself added;
- OOD accuracy: accuracy on the shifted test split. Nothing is tuned or chosen
  on it; the Pareto front drawn from it describes the grid, it does not select
  a model.

Outputs (in ``--out``, default ``benchmarks/results/cost``): ``runs.csv`` (every
run, appended as it finishes, so a rerun resumes), ``summary.md`` (table per
dataset with the command and the machine) and ``pareto.png`` (fit time against
accuracy, the front highlighted).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .datasets import SIMULATION_SEEDS, SIMULATION_SETTINGS
from .machine import cpu_model

AUTO_MPG = "auto-mpg"
#: The default grid: dense and three sparse gates, 1 or 5 heads, 1 or 2 layers.
DEFAULT_TOP_K: tuple[int | None, ...] = (None, 3, 2, 1)
DEFAULT_HEADS: tuple[int, ...] = (1, 5)
DEFAULT_LAYERS: tuple[int, ...] = (1, 2)
#: Far below the paper's 200 epochs, so that the 16-config grid fits in ~15 min
#: on 2 cores; the comparison is between knobs at equal training budget.
DEFAULT_EPOCHS = 30
#: The setting where the paper's attention model scores best (0.404); it learns
#: within the short budget, unlike the corr=0.9 settings
DEFAULT_SETTING = "k=1 corr=0.1 x_noise=0"
RUN_KEY = ["dataset", "seed", "config", "epochs"]
CSV_COLUMNS = [
    "dataset",
    "seed",
    "config",
    "top_k",
    "n_heads",
    "n_layers",
    "epochs",
    "n_parameters",
    "fit_seconds",
    "predict_seconds",
    "baseline_rss_mb",
    "peak_rss_mb",
    "fit_rss_increase_mb",
    "test_accuracy",
]


@dataclass(frozen=True)
class CostRun:
    """One fit of the grid: knobs, dataset and seed.

    Parameters
    ----------
    dataset
        A simulation setting name (see ``SIMULATION_SETTINGS``) or ``"auto-mpg"``.
    seed
        Data seed for the simulation, and the model's ``random_state``.
    top_k, n_heads, n_layers
        The cost knobs, passed to :class:`~attnmoe.tabular.AttentionMoEClassifier`.
    epochs
        Training epochs.
    """

    dataset: str
    seed: int
    top_k: int | None
    n_heads: int
    n_layers: int
    epochs: int

    @property
    def config(self) -> str:
        """Label of the knobs, e.g. ``"top_k=dense heads=5 layers=1"``."""
        return config_label(self.top_k, self.n_heads, self.n_layers)


def config_label(top_k: int | None, n_heads: int, n_layers: int) -> str:
    """Human-readable label of one point of the knob grid."""
    k = "dense" if top_k is None or (isinstance(top_k, float) and np.isnan(top_k)) else int(top_k)
    return f"top_k={k} heads={int(n_heads)} layers={int(n_layers)}"


def plan_cost_runs(
    top_k: Sequence[int | None] = DEFAULT_TOP_K,
    n_heads: Sequence[int] = DEFAULT_HEADS,
    n_layers: Sequence[int] = DEFAULT_LAYERS,
    settings: Sequence[str] = (DEFAULT_SETTING,),
    seeds: int = 2,
    auto_mpg_seeds: int = 3,
    epochs: int = DEFAULT_EPOCHS,
) -> list[CostRun]:
    """The grid: knobs x (auto-mpg x seeds, then simulation settings x seeds).

    Simulation seeds are the paper's published run seeds; auto-mpg's split is
    fixed (train on US cars, test on the others), so its seeds only reseed the
    model.
    """
    known = {s.name for s in SIMULATION_SETTINGS}
    for name in settings:
        if name not in known:
            raise ValueError(f"unknown setting {name!r}; choose from {sorted(known)}")
    if not 0 <= seeds <= len(SIMULATION_SEEDS):
        raise ValueError(f"simulation seeds must be in [0, {len(SIMULATION_SEEDS)}], got {seeds}")
    if auto_mpg_seeds < 0:
        raise ValueError(f"auto-mpg seeds must be >= 0, got {auto_mpg_seeds}")
    # auto-mpg first: its fits are short, so an interrupted run still has a complete table
    data = [(AUTO_MPG, seed) for seed in range(auto_mpg_seeds)]
    data += [(s, seed) for s in dict.fromkeys(settings) for seed in SIMULATION_SEEDS[:seeds]]
    runs = [
        CostRun(dataset, seed, k, h, n, epochs)
        for dataset, seed in data
        for n in n_layers
        for h in n_heads
        for k in top_k
    ]
    # one run per point of the grid, even when a knob value is named twice
    seen: set[tuple] = set()
    unique = []
    for run in runs:
        key = (run.dataset, run.seed, run.config, run.epochs)
        if key not in seen:
            seen.add(key)
            unique.append(run)
    if not unique:
        raise ValueError("nothing to run: no datasets, seeds or knob values chosen")
    return unique


def _max_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure_run(run: CostRun) -> dict[str, Any]:
    """Fit and score one configuration; meant to run in a fresh process.

    Returns
    -------
    dict
        One row of ``runs.csv`` (see ``CSV_COLUMNS``).
    """
    import torch

    from ..tabular import AttentionMoEClassifier
    from .runner import load_benchmark_data

    # the models are tiny: one thread is fastest, and keeps parallel workers apart
    torch.set_num_threads(1)
    data = load_benchmark_data(run.dataset, run.seed)
    baseline = _max_rss_mb()  # imports + data: the level every config pays anyway
    model = AttentionMoEClassifier(
        top_k=run.top_k,
        n_heads=run.n_heads,
        n_layers=run.n_layers,
        epochs=run.epochs,
        n_ensembles=1,  # one model per config: the grid's knobs are the model's own
        random_state=run.seed,
        n_jobs=1,
    )
    start = time.perf_counter()
    model.fit(data.X_train, data.y_train)
    fit_seconds = time.perf_counter() - start
    after_fit = _max_rss_mb()
    start = time.perf_counter()
    predicted = np.asarray(model.predict(data.X_test))
    predict_seconds = time.perf_counter() - start
    truth = np.asarray(data.y_test)
    return {
        "dataset": run.dataset,
        "seed": run.seed,
        "config": run.config,
        "top_k": run.top_k,
        "n_heads": run.n_heads,
        "n_layers": run.n_layers,
        "epochs": run.epochs,
        "n_parameters": sum(p.numel() for m in model.models_ for p in m.parameters()),
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _max_rss_mb(),
        "fit_rss_increase_mb": after_fit - baseline,
        "test_accuracy": float(np.mean(predicted == truth)),
    }


def _read_runs(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame["top_k"] = frame["top_k"].astype("Int64")  # missing = dense
    return frame


def run_cost_benchmark(
    runs: Iterable[CostRun], out_csv: str | Path, jobs: int = 2, progress: bool = True
) -> pd.DataFrame:
    """Run (or resume) the grid, one fresh process per run, appending to ``out_csv``.

    Parameters
    ----------
    runs
        From :func:`plan_cost_runs`.
    out_csv
        Every finished run is appended at once; runs already there are skipped.
    jobs
        Worker processes at a time (each single-threaded). Timings of parallel
        runs share the machine: keep ``jobs`` at or below the core count.
    progress
        Print one line per finished run.

    Returns
    -------
    pandas.DataFrame
        The rows of ``out_csv`` that belong to ``runs``.
    """
    runs = list(runs)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    seen: set[tuple] = set()
    if out_csv.exists():
        done = _read_runs(out_csv)
        seen = {tuple(r) for r in done[RUN_KEY].itertuples(index=False)}
    todo = [r for r in runs if (r.dataset, r.seed, r.config, r.epochs) not in seen]
    if todo:
        # spawn + one task per child: every run starts from a clean process, so
        # its RSS high-water mark is its own (fork would inherit the parent's)
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=max(1, jobs), mp_context=context, max_tasks_per_child=1
        )
        try:
            futures = [pool.submit(measure_run, r) for r in todo]
            for n, future in enumerate(as_completed(futures), 1):
                row = future.result()
                frame = pd.DataFrame([row], columns=CSV_COLUMNS)
                frame.to_csv(out_csv, mode="a", header=not out_csv.exists(), index=False)
                if progress:
                    print(
                        f"[{n}/{len(todo)}] {row['dataset']} seed {row['seed']} "
                        f"{row['config']}: fit {row['fit_seconds']:.1f}s "
                        f"acc {row['test_accuracy']:.3f}",
                        flush=True,
                    )
        except BaseException:
            # a failed run or Ctrl-C: stop, not after the rest of the grid (whose results
            # would be thrown away); the finished runs are in out_csv
            # (the runs in flight, one per worker at most, finish first)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    results = _read_runs(out_csv)
    wanted = {(r.dataset, r.seed, r.config, r.epochs) for r in runs}
    keep = [tuple(r) in wanted for r in results[RUN_KEY].itertuples(index=False)]
    return results[keep].reset_index(drop=True)


def pareto_front(cost: Sequence[float], value: Sequence[float]) -> np.ndarray:
    """Which points no other point beats: lower-or-equal cost and higher-or-equal value.

    A point is dominated when another has ``cost <=`` and ``value >=`` with at
    least one strict. Exact duplicates do not dominate each other (both stay).

    Parameters
    ----------
    cost
        To minimise (e.g. fit seconds).
    value
        To maximise (e.g. accuracy).

    Returns
    -------
    numpy.ndarray
        Bool mask, True on the front.
    """
    c = np.asarray(cost, dtype=float)
    v = np.asarray(value, dtype=float)
    if c.shape != v.shape or c.ndim != 1:
        raise ValueError("cost and value must be 1-d and of equal length")
    no_worse = (c[None, :] <= c[:, None]) & (v[None, :] >= v[:, None])  # [i, j]: j vs i
    better = (c[None, :] < c[:, None]) | (v[None, :] > v[:, None])
    return ~(no_worse & better).any(axis=1)


def summarize_cost(results: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and knob setting: means (sd for accuracy and fit time) and the front.

    ``on_front`` marks the Pareto front of mean fit time against mean accuracy
    within each dataset.
    """
    grouped = results.groupby(["dataset", "config"], sort=False)
    summary = grouped.agg(
        top_k=("top_k", "first"),
        n_heads=("n_heads", "first"),
        n_layers=("n_layers", "first"),
        epochs=("epochs", "first"),
        n_runs=("seed", "count"),
        n_parameters=("n_parameters", "first"),
        fit_seconds=("fit_seconds", "mean"),
        fit_seconds_sd=("fit_seconds", "std"),
        predict_ms=("predict_seconds", lambda s: 1000 * s.mean()),
        peak_rss_mb=("peak_rss_mb", "max"),
        fit_rss_increase_mb=("fit_rss_increase_mb", "mean"),
        accuracy=("test_accuracy", "mean"),
        accuracy_sd=("test_accuracy", "std"),
    ).reset_index()
    summary["on_front"] = False
    for _, index in summary.groupby("dataset", sort=False).groups.items():
        rows = summary.loc[index]
        summary.loc[index, "on_front"] = pareto_front(rows["fit_seconds"], rows["accuracy"])
    return summary


def plot_pareto(summary: pd.DataFrame, path: str | Path) -> Path:
    """Fit time (log x) against OOD accuracy, one panel per dataset, front highlighted."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(summary["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = summary[summary["dataset"] == dataset]
        rest, front = rows[~rows["on_front"]], rows[rows["on_front"]].sort_values("fit_seconds")
        for part, style in ((rest, {"color": "0.55"}), (front, {"color": "C3"})):
            ax.errorbar(
                part["fit_seconds"],
                part["accuracy"],
                yerr=part["accuracy_sd"].fillna(0.0),
                fmt="o",
                capsize=3,
                **style,
            )
        # the front as a staircase: the best accuracy reachable within a time budget
        ax.step(front["fit_seconds"], front["accuracy"], where="post", color="C3", lw=1.5)
        for _, r in rows.iterrows():
            label = r["config"].replace("top_k=", "k=").replace("heads=", "h=")
            ax.annotate(
                label.replace("layers=", "l="),
                (r["fit_seconds"], r["accuracy"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color="C3" if r["on_front"] else "0.35",
            )
        ax.set_xscale("log")
        ax.set_xlabel("fit time per model (s, log scale)")
        ax.set_ylabel("OOD test accuracy (mean ± sd over seeds)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    fig.suptitle("attnmoe cost knobs: Pareto front (red) of fit time vs accuracy")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def machine_description() -> str:
    """CPU model, cores, load average and versions, for the report."""
    import torch

    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu_model()}, {cores} cores ({usable} usable), 1 torch thread per run, "
        f"load average {load}; Python {platform.python_version()}, torch {torch.__version__}"
    )


def markdown_cost_report(
    summary: pd.DataFrame,
    command: str = "",
    machine: str = "",
    machine_at_start: str = "",
    jobs: int | None = None,
) -> str:
    """The summary as markdown tables, one per dataset, with command and machine."""
    lines = ["## Cost knobs: fit time, predict time, memory and OOD accuracy", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    if machine_at_start:
        lines += [f"Machine at start: {machine_at_start}", ""]
    if machine:
        lines += [f"Machine at end: {machine}", ""]
    epochs = sorted(set(summary.get("epochs", [])))
    lines += [
        "Each run is one `AttentionMoEClassifier` fit (paper sizes otherwise: bert block, "
        "d_model 20, d_head 4, batches of 128 masked predictions: shuffled masked copies for "
        "one layer, 21 rows x every location for two; the fused engine where it applies, i.e. "
        "one layer with dense gates, the torch engine otherwise)"
        + (f", {jobs} runs at a time" if jobs else "")
        + ", in a fresh process. Fit/predict time: wall clock of `fit` / `predict(X_test)`. "
        "Peak RSS: the process's resident-set high-water mark after prediction "
        "(`getrusage` ru_maxrss; includes ~0.5 GB of torch imports); ΔRSS fit: how far the "
        "fit raised it above the level after imports and data loading. Accuracy: shifted "
        "test split, mean ± sd over seeds; nothing is chosen on it. Front: not beaten by any "
        "other setting on both mean fit time and mean accuracy.",
        "",
    ]
    if epochs:
        lines += [f"Epochs: {', '.join(map(str, epochs))}.", ""]
    header = [
        "top_k",
        "heads",
        "layers",
        "params",
        "fit s (mean ± sd)",
        "predict ms",
        "peak RSS MB",
        "ΔRSS fit MB",
        "accuracy (mean ± sd)",
        "n",
        "front",
    ]
    for dataset in dict.fromkeys(summary["dataset"]):
        rows = summary[summary["dataset"] == dataset].sort_values("fit_seconds")
        lines += [f"### {dataset}", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, r in rows.iterrows():
            k = "dense" if pd.isna(r["top_k"]) else str(int(r["top_k"]))
            fit_sd = "" if pd.isna(r["fit_seconds_sd"]) else f" ± {r['fit_seconds_sd']:.2f}"
            acc_sd = "" if pd.isna(r["accuracy_sd"]) else f" ± {r['accuracy_sd']:.3f}"
            cells = [
                k,
                str(int(r["n_heads"])),
                str(int(r["n_layers"])),
                f"{int(r['n_parameters']):,}",
                f"{r['fit_seconds']:.2f}{fit_sd}",
                f"{r['predict_ms']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{r['fit_rss_increase_mb']:.1f}",
                f"{r['accuracy']:.3f}{acc_sd}",
                str(int(r["n_runs"])),
                "★" if r["on_front"] else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def cost_benchmark(
    runs: Sequence[CostRun],
    out: str | Path,
    jobs: int = 2,
    command: str = "",
    progress: bool = True,
) -> tuple[pd.DataFrame, str]:
    """Run the grid and write ``runs.csv``, ``summary.md`` and ``pareto.png`` into ``out``.

    Returns
    -------
    summary : pandas.DataFrame
        From :func:`summarize_cost`.
    report : str
        The markdown written to ``summary.md``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    at_start = machine_description()
    results = run_cost_benchmark(runs, out / "runs.csv", jobs=jobs, progress=progress)
    summary = summarize_cost(results)
    report = markdown_cost_report(
        summary,
        command=command,
        machine=machine_description(),
        machine_at_start=at_start,
        jobs=jobs,
    )
    (out / "summary.md").write_text(report)
    plot_pareto(summary, out / "pareto.png")
    return summary, report


QUICK = {
    "top_k": (None, 1),
    "n_heads": (1,),
    "n_layers": (1,),
    "seeds": 1,
    "auto_mpg_seeds": 1,
    "epochs": 1,
}


__all__ = [
    "CostRun",
    "config_label",
    "cost_benchmark",
    "markdown_cost_report",
    "measure_run",
    "pareto_front",
    "plan_cost_runs",
    "plot_pareto",
    "run_cost_benchmark",
    "summarize_cost",
]
