"""Models fitted and saved once per session for the fuzz tests, and the outcome report.

Each fuzz example copies what it changes into its own temporary folder; these
originals are never written to.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.model import AttentionConfig, BidirectionalAttention
from attnmoe.tabular import AttentionMoEClassifier

from .harness import RECORDER

#: a fit of about a tenth of a second: what is fuzzed is the input, not the learning
TINY = {
    "epochs": 1,
    "batch_size": 64,
    "d_model": 8,
    "n_heads": 2,
    "d_head": 4,
    "d_ff": 8,
    "verbose": 0,
}


def table(seed: int, n: int = 60) -> pd.DataFrame:
    """A small mixed table: text, integer, float and boolean columns and a text label."""
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], n)
    size = rng.integers(0, 4, n)
    return pd.DataFrame(
        {
            "colour": colour,
            "size": size,
            "weight": rng.normal(size=n).round(3),
            "flag": rng.random(n) < 0.5,
            "label": np.where((colour == "red") | (size >= 3), "yes", "no"),
        }
    )


@pytest.fixture(scope="session")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="session")
def classifier(fuzz_dir):
    """(fitted classifier, its folder, the CSV it was fitted on)."""
    frame = table(0)
    csv = fuzz_dir / "train.csv"
    frame.to_csv(csv, index=False)
    clf = AttentionMoEClassifier(**TINY, n_ensembles=2, random_state=0)
    clf.fit(frame.drop(columns="label"), frame["label"])
    folder = fuzz_dir / "classifier"
    clf.save_pretrained(folder)
    return clf, folder, csv


@pytest.fixture(scope="session")
def other_classifier(fuzz_dir) -> Path:
    """A second classifier on other columns and classes: the source of swapped files."""
    frame = table(1).rename(columns={"weight": "height"})
    frame["label"] = frame["size"].map({0: "a", 1: "b", 2: "c", 3: "c"})
    clf = AttentionMoEClassifier(**TINY, n_ensembles=2, random_state=1)
    clf.fit(frame.drop(columns=["label", "size"]), frame["label"])
    folder = fuzz_dir / "other_classifier"
    clf.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def attention(fuzz_dir):
    """(a plain attention model, its folder)."""
    torch.manual_seed(0)
    model = BidirectionalAttention(AttentionConfig(vocab_size=11, max_len=5, d_model=8, n_heads=2))
    model.eval()
    folder = fuzz_dir / "attention"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="session")
def other_attention(fuzz_dir) -> Path:
    torch.manual_seed(1)
    config = AttentionConfig(vocab_size=13, max_len=6, d_model=8, n_heads=2, block="bert")
    folder = fuzz_dir / "other_attention"
    BidirectionalAttention(config).save_pretrained(folder)
    return folder


def pytest_sessionfinish(session, exitstatus) -> None:
    """``ATTNMOE_FUZZ_REPORT=PATH``: write the tallies there (JSON beside, for the script)."""
    path = os.environ.get("ATTNMOE_FUZZ_REPORT")
    if path and RECORDER.counts:
        Path(path).write_text(RECORDER.markdown())
        counts = {suite: dict(tally) for suite, tally in RECORDER.counts.items()}
        counts["error messages"] = dict(RECORDER.messages.most_common())
        Path(path).with_suffix(".json").write_text(json.dumps(counts, indent=1) + "\n")
