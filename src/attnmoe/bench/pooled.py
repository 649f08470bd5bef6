"""One ``attnmoe bench tabular`` report over the runs of several folders, on their common seeds.

Each folder holds the ``runs.csv`` of ``attnmoe bench tabular`` (for example attnmoe's in
one folder, baselines run later in another). Fits nothing: the runs are pooled (a model
may come from one folder only), every dataset is cut to the seeds that every pooled model
ran on it (a dataset without such seeds is left out), and the report is the one
``attnmoe bench tabular`` writes (accuracy, MSE, the paper's numbers on the same seeds,
win counts against every baseline, ours and the paper's).
``benchmarks/combine_tabular_runs.py`` is the command line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .runner import markdown_report

KEY = ["dataset", "seed", "model"]


def pool(run_dirs: list[Path]) -> pd.DataFrame:
    """The runs of every folder, each dataset cut to the seeds all its models ran."""
    frames = []
    for run_dir in run_dirs:
        # every column stays: a run's protocol ("attnmoe_unlabeled_test") and choices
        # ("chosen") shape its report
        frames.append(pd.read_csv(run_dir / "runs.csv").drop_duplicates(KEY, keep="first"))
    runs = pd.concat(frames, ignore_index=True)
    if runs.duplicated(KEY).any():
        twice = runs[runs.duplicated(KEY)][KEY].drop_duplicates().head(3).values.tolist()
        raise ValueError(f"runs found in two folders, e.g. {twice}: pool different models")
    models = set(runs["model"])
    kept = []
    for _, group in runs.groupby("dataset", sort=False):
        seeds_per_model = group.groupby("model")["seed"].apply(set)
        if set(seeds_per_model.index) != models:
            continue  # a model never ran this dataset
        common = set.intersection(*seeds_per_model)
        if common:
            kept.append(group[group["seed"].isin(common)])
    if not kept:
        raise ValueError("no dataset was run by every pooled model")
    return pd.concat(kept, ignore_index=True)


def pooled_report(run_dirs: list[Path], command: str) -> str:
    """The ``attnmoe bench tabular`` report of :func:`pool`'s runs, with a note naming the
    folders and the seeds kept per dataset after ``command``'s line."""
    runs = pool(run_dirs)
    seeds = runs.groupby("dataset", sort=False)["seed"].nunique()
    note = (
        "Pooled from "
        + ", ".join(f"`{d}`" for d in run_dirs)
        + "; each dataset cut to the seeds every model ran ("
        + "; ".join(f"{d}: {n}" for d, n in seeds.items())
        + ").\n\n"
    )
    report = markdown_report(runs, command=command)
    head, _, rest = report.partition("\n\n")  # the command line, then the note
    return f"{head}\n\n{note}{rest}"
