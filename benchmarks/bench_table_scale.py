"""How attnmoe's fit grows with a table's rows and columns, beside LightGBM and CatBoost.

The data: the paper's simulation generator grown to D columns
(:func:`attnmoe.bench.datasets.make_simulation` with ``d = D``, ``k = min(5, D)``
causal columns, ``corr = 0.5``, ``x_noise = 0.5``, 10 equal-frequency bins per
column and for the target), its training distribution only: the first ``rows``
rows train, the next 10,000 rows score (in-distribution accuracy). Each
(rows, columns, model) run is a fresh process (so its peak RSS is its own) on one
thread; it records the fit time, prediction rows per second (one thread; for
attnmoe also on the torch forward pass that its experts-form tables replaced),
accuracy and peak RSS, and is appended to ``runs.csv`` as soon as it ends (a
rerun skips recorded runs). The summary fits ``fit_seconds ~ rows^a`` per column
count and ``~ columns^b`` per row count (least squares on logs) and plots the
fit times (PNG).

Models: attnmoe (``AttentionMoEClassifier`` with its defaults, or
``--attnmoe-params``), LightGBM (``LGBMClassifier`` defaults on the bin codes)
and CatBoost (:func:`attnmoe.bench.baselines.catboost`: every column categorical,
CatBoost's defaults).

``--stream N``: attnmoe's runs fit as a table larger than memory would: the
training rows are written to a Parquet file and ``attnmoe fit TABLE.parquet
--chunk-rows N`` (``fit_chunks``: the encoder in one pass, the codes in a compact
array) trains in a child process, so ``peak_rss_mib`` is that fit's alone and
``fit_seconds`` (as the command reports it) includes reading the file twice. Recorded as model
``attnmoe-chunks``.

Usage (the full grid is long; this session ran the small corner)::

    nice python benchmarks/bench_table_scale.py --rows 2000 20000 --columns 5 20
    nice python benchmarks/bench_table_scale.py            # 2k..1M rows x 5, 20, 50 columns
    nice python benchmarks/bench_table_scale.py --rows 1000000 --columns 50 \
        --models attnmoe --stream 100000                  # the streaming fit's peak RSS
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = (2_000, 20_000, 200_000, 1_000_000)
COLUMNS = (5, 20, 50)
MODELS = ("attnmoe", "lightgbm", "catboost")
N_TEST = 10_000
OUT = Path(__file__).resolve().parent / "results" / "table_scale"
PNG = Path(__file__).resolve().parents[1] / "docs" / "images" / "table_scale.png"


def table(rows: int, columns: int, seed: int = 0):
    """Training rows and in-distribution test rows of the simulation grown to ``columns``."""
    from attnmoe.bench.datasets import make_simulation

    data = make_simulation(seed, k=min(5, columns), corr=0.5, x_noise=0.5, n=rows + N_TEST,
                           d=columns)  # fmt: skip
    X, y = data.X_train, data.y_train  # the training distribution only
    return X.iloc[:rows], y.iloc[:rows], X.iloc[rows:], y.iloc[rows:]


def make(model: str, seed: int, attnmoe_params: dict):
    if model == "attnmoe":
        from attnmoe.tabular import AttentionMoEClassifier

        return AttentionMoEClassifier(random_state=seed, n_jobs=1, **attnmoe_params)
    if model == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1)
    from attnmoe.bench.baselines import make_baseline

    return make_baseline("catboost", random_state=seed, n_jobs=1)


def run(rows: int, columns: int, model: str, attnmoe_params: dict) -> dict:
    """One fit and prediction, in this (fresh) process."""
    import torch

    torch.set_num_threads(1)
    X, y, X_test, y_test = table(rows, columns)
    estimator = make(model, 0, attnmoe_params)
    start = time.perf_counter()
    estimator.fit(X, y)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = np.asarray(estimator.predict(X_test)).ravel()
    predict_seconds = time.perf_counter() - start
    # the fit's and prediction's peak, before the old torch path (timed for comparison)
    # builds its own, larger, intermediate arrays
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch_path = torch_path_rows_per_second(estimator, X_test) if model == "attnmoe" else ""
    history = getattr(estimator, "histories_", [None])[0]
    return {
        "rows": rows,
        "columns": columns,
        "model": model,
        "fit_seconds": fit_seconds,
        "predict_rows_per_second": len(X_test) / predict_seconds,
        "predict_rows_per_second_torch": torch_path,
        "accuracy": float(np.mean(predicted.astype(int) == y_test.to_numpy().astype(int))),
        "peak_rss_mib": peak_rss_mib,
        "steps": getattr(history, "steps", ""),
        "epochs_run": getattr(history, "epochs_run", ""),
        "params": json.dumps(attnmoe_params if model == "attnmoe" else {}, sort_keys=True),
    }


def torch_path_rows_per_second(estimator, X_test) -> float:
    """attnmoe's prediction rows per second with every member on its torch forward pass
    (the path before the experts-form tables, issue 24), the same rows as ``run``."""
    estimator._prediction_tables = lambda: None  # this process's estimator only
    start = time.perf_counter()
    estimator.predict(X_test)
    return len(X_test) / (time.perf_counter() - start)


def run_streamed(rows: int, columns: int, attnmoe_params: dict, chunk_rows: int) -> dict:
    """attnmoe fit by ``attnmoe fit TABLE.parquet --chunk-rows`` in a child process (its
    peak RSS is the fit's alone), then predicted here."""
    import torch

    from attnmoe.tabular import AttentionMoEClassifier

    torch.set_num_threads(1)
    X, y, X_test, y_test = table(rows, columns)
    with tempfile.TemporaryDirectory() as folder:
        path, model = Path(folder) / "table.parquet", Path(folder) / "model"
        X.assign(y=y.to_numpy()).to_parquet(path, index=False)
        del X, y
        command = [
            sys.executable, "-m", "attnmoe.cli", "fit", str(path), "--target", "y",
            "--out", str(model), "--random-state", "0", "--chunk-rows", str(chunk_rows),
            "--params", json.dumps({"n_jobs": 1, **attnmoe_params}),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        said = subprocess.run(command, check=True, env=env, stdout=subprocess.PIPE, text=True)
        print(said.stdout, end="", flush=True)
        # the fit's own seconds (both readings of the file and the training), as the
        # command says them: not the child's start (imports, compiled kernels)
        fit_seconds = float(re.search(r" in ([0-9.]+) s; saved", said.stdout).group(1))
        estimator = AttentionMoEClassifier.from_pretrained(model)
    start = time.perf_counter()
    predicted = np.asarray(estimator.predict(X_test)).ravel()
    predict_seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "columns": columns,
        "model": "attnmoe-chunks",
        "fit_seconds": fit_seconds,
        "predict_rows_per_second": len(X_test) / predict_seconds,
        "accuracy": float(np.mean(predicted.astype(int) == y_test.to_numpy().astype(int))),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "steps": "",  # not saved with the model
        "epochs_run": "",
        "params": json.dumps(attnmoe_params, sort_keys=True),
    }


def _child(args, queue, stream) -> None:
    rows, columns, _, attnmoe_params = args
    queue.put(run(*args) if stream is None else run_streamed(rows, columns, attnmoe_params, stream))


def run_in_fresh_process(
    rows: int, columns: int, model: str, attnmoe_params: dict, stream: int | None = None
) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    args = ((rows, columns, model, attnmoe_params), queue, stream if model == "attnmoe" else None)
    process = context.Process(target=_child, args=args)
    process.start()
    result = queue.get()
    process.join()
    return result


def exponent(x, y) -> float:
    """The slope of log y on log x (NaN with fewer than two points)."""
    if len(x) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def summary(runs: pd.DataFrame, params: str) -> str:
    """Every run in a table; attnmoe's exponents from its runs with ``params`` only."""
    lines = [
        "| rows | columns | model | attnmoe params | fit s | predict rows/s "
        "| torch path rows/s | accuracy | peak RSS MiB | steps |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def number(value, spelt: str) -> str:  # blank where a run did not record it
        return "" if value == "" or pd.isna(value) else format(float(value), spelt)

    for r in runs.sort_values(["columns", "rows", "model"]).itertuples():
        torch_path = getattr(r, "predict_rows_per_second_torch", "")
        lines.append(
            f"| {r.rows:,} | {r.columns} | {r.model} | "
            f"{r.params if r.model.startswith('attnmoe') else ''} | {r.fit_seconds:.1f} | "
            f"{r.predict_rows_per_second:,.0f} | {number(torch_path, ',.0f')} | "
            f"{r.accuracy:.4f} | {r.peak_rss_mib:,.0f} | {number(r.steps, ',.0f')} |"
        )
    ours = runs[(runs.model == "attnmoe") & (runs.params == params)]
    lines += [
        "",
        f"attnmoe's fit time with {params}, fitted exponents (least squares on logs):",
        "",
    ]
    for columns, part in ours.groupby("columns"):
        a = exponent(part["rows"], part["fit_seconds"])
        lines.append(f"- {columns} columns: fit_seconds ~ rows^{a:.2f}")
    for rows, part in ours.groupby("rows"):
        b = exponent(part["columns"], part["fit_seconds"])
        lines.append(f"- {rows:,} rows: fit_seconds ~ columns^{b:.2f}")
    return "\n".join(lines) + "\n"


def plot(runs: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, columns), part in runs.groupby(["model", "columns"]):
        part = part.sort_values("rows")
        ax.plot(part.rows, part.fit_seconds, marker="o", label=f"{model}, {columns} columns")
    ax.set(xscale="log", yscale="log", xlabel="training rows", ylabel="fit seconds (one thread)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--columns", type=int, nargs="+", default=list(COLUMNS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--attnmoe-params", default="{}", help="JSON of estimator parameters")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--stream",
        type=int,
        default=None,
        metavar="N",
        help="attnmoe fits from a Parquet file read in chunks of N rows (attnmoe-chunks)",
    )
    args = parser.parse_args()
    attnmoe_params = json.loads(args.attnmoe_params)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "runs.csv"
    runs = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    keys = ("rows", "columns", "model", "params")
    done = set() if runs.empty else set(runs[list(keys)].itertuples(index=False, name=None))
    for columns in args.columns:
        for rows in args.rows:
            for model in args.models:
                params = json.dumps(attnmoe_params if model == "attnmoe" else {}, sort_keys=True)
                name = "attnmoe-chunks" if model == "attnmoe" and args.stream else model
                if (rows, columns, name, params) in done:
                    continue
                row = run_in_fresh_process(rows, columns, model, attnmoe_params, args.stream)
                print(json.dumps(row), flush=True)
                runs = pd.concat([runs, pd.DataFrame([row])], ignore_index=True)
                runs.to_csv(csv, index=False)
    params = json.dumps(attnmoe_params, sort_keys=True)
    (args.out / "summary.md").write_text(summary(runs, params), encoding="utf-8")
    png = PNG if args.out == OUT else args.out / "fit_seconds.png"  # docs: the grid's only
    plot(runs[(runs.model != "attnmoe") | (runs.params == params)], png)
    print(summary(runs, params))


if __name__ == "__main__":
    main()
