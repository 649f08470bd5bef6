"""Fill held-out cells: AttentionMoEImputer vs scikit-learn's imputers.

Usage: .venv/bin/python benchmarks/bench_imputer.py [--seeds 3] [--fraction 0.1]

On real categorical tables (auto-mpg, all 385 rows; one simulation run, 4000
rows) a seeded random share of cells is hidden; every imputer is fitted on the
table with holes and scored on the hidden cells: exact category recovery
(accuracy) and mean absolute error in category codes (the codes are ordered
bins). KNN and iterative imputation work on numeric codes, so their outputs are
rounded to the nearest valid code. Mean ± sd over seeds.

``attnmoe, hidden context 0.15`` trains on masked copies that also hide each
other cell with probability 0.15 (``context_mask_rate``), so the model learns to
fill a cell when others of its row are missing too; the value was fixed before
this benchmark was first run with it, not chosen on the hidden cells.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

from attnmoe.bench.datasets import load_auto_mpg, make_simulation
from attnmoe.bench.machine import machine_description
from attnmoe.tabular import AttentionMoEImputer


def tables() -> dict[str, pd.DataFrame]:
    mpg = load_auto_mpg()
    sim = make_simulation(4951, k=5, corr=0.9, x_noise=0.0)
    out = {}
    for name, split in (("auto-mpg", mpg), ("simulation k=5 corr=0.9 x_noise=0 (seed 4951)", sim)):
        train = split.X_train.assign(**{split.target_name: split.y_train})
        test = split.X_test.assign(**{split.target_name: split.y_test})
        out[name] = pd.concat([train, test], ignore_index=True).astype(float)
    return out


def imputers(seed: int) -> dict[str, object]:
    return {
        "attnmoe": AttentionMoEImputer(random_state=seed),
        "attnmoe, hidden context 0.15": AttentionMoEImputer(
            random_state=seed, context_mask_rate=0.15
        ),
        "most_frequent": SimpleImputer(strategy="most_frequent"),
        "knn": KNNImputer(n_neighbors=5),
        "iterative": IterativeImputer(random_state=seed, max_iter=10),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--out", default="benchmarks/results/tabular/imputer.md")
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    for name, full in tables().items():
        codes_max = full.max().to_numpy()
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            hidden = rng.random(full.shape) < args.fraction
            holes = full.mask(hidden)
            for method, imputer in imputers(seed).items():
                start = time.perf_counter()
                filled = np.asarray(imputer.fit_transform(holes), dtype=float)
                seconds = time.perf_counter() - start
                filled = np.clip(np.rint(filled), 0, codes_max)  # nearest valid code
                truth = full.to_numpy()[hidden]
                guess = filled[hidden]
                rows.append(
                    dict(
                        table=name,
                        seed=seed,
                        method=method,
                        accuracy=float(np.mean(guess == truth)),
                        mae=float(np.mean(np.abs(guess - truth))),
                        seconds=seconds,
                    )
                )
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    summary = df.groupby(["table", "method"], sort=False).agg(
        acc=("accuracy", "mean"),
        acc_sd=("accuracy", "std"),
        mae=("mae", "mean"),
        mae_sd=("mae", "std"),
        seconds=("seconds", "mean"),
    )
    lines = [
        "## Imputation of held-out cells",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_imputer.py --seeds {args.seeds} "
        f"--fraction {args.fraction}`",
        "",
        f"Machine: {machine_description('at end')}. {args.fraction:.0%} of cells hidden "
        f"at random per seed; mean ± sd over {args.seeds} seeds.",
        "",
        "| table | method | accuracy on hidden cells | MAE (codes) | fit+fill time (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for (table, method), r in summary.iterrows():
        lines.append(
            f"| {table} | {method} | {r.acc:.3f} ± {r.acc_sd:.3f} | {r.mae:.3f} ± {r.mae_sd:.3f} "
            f"| {r.seconds:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
