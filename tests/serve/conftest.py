"""A small saved classifier (fitted once per session) and a table of its rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.tabular import AttentionMoEClassifier
from tests.explain.conftest import chromium  # noqa: F401  (the monitor page's browser)

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")


@pytest.fixture(scope="session")
def table() -> tuple[pd.DataFrame, np.ndarray]:
    """Mixed types: a text column, a whole-number category, a binned float."""
    rng = np.random.default_rng(0)
    n = 120
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.integers(0, 4, n)
    label = np.where((colour == "red") | (size >= 3), "yes", "no")
    frame = pd.DataFrame({"colour": colour, "size": size, "noise": rng.normal(size=n)})
    return frame, label


@pytest.fixture(scope="session")
def model_dir(table, tmp_path_factory):
    torch.set_num_threads(1)
    frame, label = table
    clf = AttentionMoEClassifier(
        epochs=3, batch_size=256, learning_rate=1e-2, n_heads=2, n_ensembles=2, random_state=0
    ).fit(frame, label)
    path = tmp_path_factory.mktemp("served") / "colours"
    clf.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def clf(model_dir):
    return AttentionMoEClassifier.from_pretrained(model_dir)


@pytest.fixture
def rows(table) -> list[dict]:
    """Five rows as a client sends them (JSON types)."""
    frame, _ = table
    return [
        {"colour": str(r.colour), "size": int(r.size), "noise": float(r.noise)}
        for r in frame.head(5).itertuples()
    ]
