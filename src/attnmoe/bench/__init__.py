"""Benchmarks of the paper's tabular experiments: data, baselines, published numbers."""

from attnmoe.bench.baselines import BASELINES, make_baseline
from attnmoe.bench.datasets import (
    SIMULATION_SEEDS,
    SIMULATION_SETTINGS,
    SimulationSetting,
    TabularSplit,
    load_auto_mpg,
    make_simulation,
)
from attnmoe.bench.paper import load_paper_per_seed, load_paper_results

__all__ = [
    "BASELINES",
    "SIMULATION_SEEDS",
    "SIMULATION_SETTINGS",
    "SimulationSetting",
    "TabularSplit",
    "load_auto_mpg",
    "load_paper_per_seed",
    "load_paper_results",
    "make_baseline",
    "make_simulation",
]
