"""Shared fitted models (fitted once per session) and a real headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.bench.datasets import load_auto_mpg, make_simulation
from attnmoe.tabular import AttentionMoEClassifier

FAST = dict(epochs=15, batch_size=256, learning_rate=1e-2, random_state=0)


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


def _install_chromium() -> str | None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=900, check=False)
    result = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"apt-get install chromium failed:\n{result.stderr[-2000:]}")
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium, installed with apt-get when missing."""
    path = shutil.which("chromium")
    if path:
        return path
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and apt-get is unavailable to install it")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        pytest.skip("chromium is not installed and apt-get needs root to install it")
    path = _install_chromium()
    if not path:
        pytest.fail("apt-get installed chromium but no 'chromium' is on PATH")
    return path
