"""Where ``predict_proba``'s time goes: encoding, the tables' loop, the torch path.

A classifier with the default model is fitted briefly (``max_steps=200``: the weights'
values do not change the cost) on 2,000 rows of the table of
``bench_table_scale.py`` (``--columns``, default 20), then predicts ``--rows`` rows
(default 200,000) of the same generator on one thread. CPU seconds
(``time.process_time``, the best of ``--repeats``) stay meaningful on a shared machine
where wall time does not. Parts timed: ``tokens`` (the DataFrame to codes), the
tables' loop on those codes, the whole ``predict_proba``, and the torch forward pass
that the tables replaced (on 10,000 rows). The same with every numeric cell moved
half-way between two knots (fractional codes). Writes ``predict/profile.md``.

Usage::

    NUMBA_NUM_THREADS=1 nice python benchmarks/probe_predict.py
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from bench_table_scale import OUT, table

TORCH_ROWS = 10_000


def cpu_seconds(call, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.process_time()
        call()
        best = min(best, time.process_time() - start)
    return best


def profile(clf, X, repeats: int) -> dict:
    """CPU seconds of each part of predicting ``X``, and the torch path's rows/s."""
    tables = clf._prediction_tables()
    codes = clf.tokens(X).numpy()
    parts = {
        "encoding": cpu_seconds(lambda: clf.tokens(X), repeats),
        "loop": cpu_seconds(lambda: tables.probabilities(codes), repeats),
        "predict_proba": cpu_seconds(lambda: clf.predict_proba(X), repeats),
    }
    few = X.iloc[:TORCH_ROWS]
    clf._prediction_tables = lambda: None  # every member on its torch forward pass
    torch_seconds = cpu_seconds(lambda: clf.predict_proba(few), 1)
    del clf._prediction_tables
    rates = {name: len(X) / seconds for name, seconds in parts.items()}
    rates["torch path"] = len(few) / torch_seconds
    return {"seconds": parts, "rows/s": rates, "fractional": float(np.mean(codes % 1 > 0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT / "predict")
    args = parser.parse_args()
    import torch

    from attnmoe.tabular import AttentionMoEClassifier

    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)  # the clipped cells of the shifted rows
    X, y, X_new, _ = table(2_000, args.columns)
    clf = AttentionMoEClassifier(max_steps=200, random_state=0, n_jobs=1).fit(X, y)
    X_new = X_new.sample(args.rows, replace=True, random_state=0).reset_index(drop=True)
    clf.predict_proba(X_new.iloc[:10])  # the tables built, the compiled loop loaded
    between = X_new.astype(float) + 0.5  # half-way between two knots (last ones clipped)
    runs = {"whole codes": profile(clf, X_new, args.repeats),
            "fractional codes": profile(clf, between, args.repeats)}  # fmt: skip
    lines = [
        f"`predict_proba` of {args.rows:,} rows x {args.columns} columns, one thread, CPU "
        f"seconds (best of {args.repeats}); torch path on {TORCH_ROWS:,} rows.",
        "",
        "| codes | share fractional | encoding s | tables' loop s | predict_proba s "
        "| predict_proba rows/s | torch path rows/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        s, r = run["seconds"], run["rows/s"]
        lines.append(
            f"| {name} | {run['fractional']:.2f} | {s['encoding']:.3f} | "
            f"{s['loop']:.3f} | {s['predict_proba']:.3f} | "
            f"{r['predict_proba']:,.0f} | {r['torch path']:,.0f} |"
        )
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
