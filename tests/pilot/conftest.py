"""A small table and one small pilot run through the command line, shared by the tests."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.cli import main

#: the models of the small pilot: every attnmoe protocol, two alternatives, the floor
MODELS = ["attnmoe", "attnmoe-tuned", "attnmoe-transductive", "logistic_regression",
          "hist_gradient_boosting", "majority"]  # fmt: skip
FAST = '{"epochs": 4, "batch_size": 64}'


def small_table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Regions, a date, a number and a colour; the label follows colour and number."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east"], n)
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n) + (region == "south")
    label = np.where((colour == "red") ^ (size > 0.5), "yes", "no")
    days = pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 730, n), unit="D")
    return pd.DataFrame({"region": region, "day": days.strftime("%Y-%m-%d"),
                         "colour": colour, "size": size, "sex": rng.choice(["f", "m"], n),
                         "label": label})  # fmt: skip


@pytest.fixture(scope="session")
def pilot_dir(tmp_path_factory):
    """One pilot (2 seeds, tiny epochs) through ``attnmoe pilot``: its folder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pilot")
    small_table().to_csv(root / "table.csv", index=False)
    argv = ["pilot", str(root / "table.csv"), "--target", "label", "--split-by", "region",
            "--train", "north", "east", "--group", "sex", "--drop", "day", "--seeds", "2",
            "--params", FAST, "--models", *MODELS, "--out", str(root / "out"),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return root / "out"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; the page tests skip where it is not installed."""
    path = shutil.which("chromium")
    if not path:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path
