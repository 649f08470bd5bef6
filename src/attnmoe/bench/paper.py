"""The paper's published numbers, packaged with the library.

:func:`load_paper_results` returns Tables 1-5 of Wibisono & Wang (UAI 2023,
arXiv:2307.04057) in long form; :func:`load_paper_per_seed` returns the
per-seed simulation results behind Tables 3-4.  Both read the copies under
``attnmoe/data`` through :mod:`importlib.resources`, so they work from an
installed package and need no network access.
"""

from __future__ import annotations

import re
from importlib import resources

import pandas as pd

from attnmoe.bench.datasets import SIMULATION_SETTINGS, SimulationSetting

__all__ = [
    "PER_SEED_MODELS",
    "load_paper_per_seed",
    "load_paper_results",
    "paper_analogy_tables",
]

#: Model codes of the per-seed files and the matching ``model`` names of
#: :func:`load_paper_results`.
PER_SEED_MODELS: dict[str, str] = {
    "lr": "logistic_regression",
    "rf": "random_forest",
    "gb": "gradient_boosting",
    "mlp": "mlp",
    "at": "attention",
}


def _data_dir() -> resources.abc.Traversable:
    return resources.files("attnmoe").joinpath("data")


def load_paper_results() -> pd.DataFrame:
    """Return the paper's published results (Tables 1-5) in long form.

    Returns
    -------
    pandas.DataFrame
        Columns ``table, setting, model, metric, mean, sd, n_runs``.  For the
        simulation (table ``"3-4 simulation"``) ``setting`` matches
        :attr:`attnmoe.bench.datasets.SimulationSetting.name`.
    """
    with _data_dir().joinpath("paper_results.csv").open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


def _resolve_setting(setting: SimulationSetting | str) -> SimulationSetting:
    if isinstance(setting, SimulationSetting):
        return setting
    for candidate in SIMULATION_SETTINGS:
        if setting in (candidate.name, candidate.paper_file):
            return candidate
    known = ", ".join(repr(s.name) for s in SIMULATION_SETTINGS)
    raise ValueError(f"unknown simulation setting {setting!r}; known: {known}")


def load_paper_per_seed(setting: SimulationSetting | str) -> pd.DataFrame:
    """Return the paper's per-seed simulation results for one setting.

    Parameters
    ----------
    setting : SimulationSetting or str
        A setting, its ``name`` (``"k=1 corr=0.1 x_noise=0.5"``) or its
        ``paper_file`` (``"1_0.1_0.5_True_10.csv"``).

    Returns
    -------
    pandas.DataFrame
        One row per seed, in the paper's seed order: ``seed`` and
        ``<metric>_<split>_<model>`` columns (metric ``acc``/``mse``, split
        ``train``/``test``, model one of :data:`PER_SEED_MODELS`).
    """
    resolved = _resolve_setting(setting)
    path = _data_dir().joinpath("paper_per_seed", resolved.paper_file)
    with path.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, index_col=0)
    # The files carry the authors' pandas index as an unnamed first column.
    return frame.reset_index(drop=True)


def paper_analogy_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's Tables 1 (top-1 accuracy) and 2 (mean cosine), rows semantic/syntactic/all.

    Row labels look like ``"semantic (2278)"``; columns are the paper's models.
    """
    df = load_paper_results()
    out = []
    for table, metric in (("1 analogy", "top1_accuracy"), ("2 analogy", "mean_cosine")):
        sub = df[(df["table"] == table) & (df["metric"] == metric)].copy()
        sub["row"] = sub["setting"].map(lambda s: re.sub(r" questions\)", ")", s))
        wide = sub.pivot(index="row", columns="model", values="mean")
        order = sorted(
            wide.index, key=lambda r: ["semantic", "syntactic", "all"].index(r.split()[0])
        )
        out.append(wide.loc[order].rename_axis(index=None, columns=None))
    return out[0], out[1]
