"""Shared fitted models (fitted once per session) and a real headless Chromium."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.bench.datasets import load_auto_mpg, make_simulation
from attnmoe.tabular import AttentionMoEClassifier

FAST = dict(epochs=15, batch_size=256, learning_rate=1e-2, n_ensembles=1, random_state=0)


@pytest.fixture(scope="session")
def auto_mpg():
    return load_auto_mpg()


@pytest.fixture(scope="session")
def auto_mpg_model(auto_mpg):
    # 60 epochs: still ~2 s, and the report shows a model that learnt something
    torch.set_num_threads(1)
    params = {**FAST, "epochs": 60}
    return AttentionMoEClassifier(**params).fit(auto_mpg.X_train, auto_mpg.y_train)


@pytest.fixture(scope="session")
def simulation():
    return make_simulation(seed=4951, k=1, corr=0.1, x_noise=0.0, n=600, n_cat=4)


@pytest.fixture(scope="session")
def simulation_model(simulation):
    torch.set_num_threads(1)
    return AttentionMoEClassifier(**FAST).fit(simulation.X_train, simulation.y_train)


@pytest.fixture(scope="session")
def pure_table_model():
    """A pure-form classifier on a small mixed-type table (exact additive logits)."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = 240
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.integers(0, 4, n)
    label = np.where((colour == "red") | (size >= 3), "yes", "no")
    frame = pd.DataFrame({"colour": colour, "size": size, "noise": rng.normal(size=n)})
    clf = AttentionMoEClassifier(block="pure", n_heads=2, d_head=4, d_model=8, **FAST)
    return clf.fit(frame, label), frame, label


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium; the page tests skip where it is not installed
    (``apt-get install -y chromium``): installing from a test would need root and
    a network, and could hang an offline run."""
    path = shutil.which("chromium")
    if not path:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path
