"""attnmoe.bench.pooled: pooling runs of several folders on their common seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from attnmoe.bench import pooled as combine
from attnmoe.bench.runner import markdown_report

COLUMNS = ["dataset", "seed", "model", "test_accuracy", "test_mse", "fit_seconds"]


def _folder(path: Path, rows: list[tuple]) -> Path:
    path.mkdir()
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path / "runs.csv", index=False)
    return path


def test_pool_keeps_the_seeds_every_model_ran(tmp_path: Path) -> None:
    a, b = "k=1 corr=0.1 x_noise=0", "k=5 corr=0.9 x_noise=0"
    ours = _folder(
        tmp_path / "ours",
        [(a, s, "attnmoe", 0.4, 1.0, 1.0) for s in (4951, 5657, 2743)]
        + [(b, 4951, "attnmoe", 0.3, 1.0, 1.0)],
    )
    peers = _folder(tmp_path / "peers", [(a, s, "catboost", 0.3, 1.0, 1.0) for s in (5657, 4951)])
    pooled = combine.pool([ours, peers])
    # setting b: catboost never ran it; setting a: seed 2743 only attnmoe ran
    assert set(pooled["dataset"]) == {a}
    assert sorted(pooled["seed"].unique()) == [4951, 5657] and len(pooled) == 4
    with pytest.raises(ValueError, match="two folders"):
        combine.pool([ours, ours])
    apart = _folder(tmp_path / "apart", [(a, 6049, "mlp", 0.3, 1.0, 1.0)])  # no common seed
    with pytest.raises(ValueError, match="no dataset"):
        combine.pool([ours, apart])


def test_pool_keeps_a_runs_protocol_columns(tmp_path: Path) -> None:
    a = "k=1 corr=0.1 x_noise=0"
    ours = _folder(tmp_path / "ours", [(a, 4951, "attnmoe", 0.4, 1.0, 1.0)])
    runs = pd.read_csv(ours / "runs.csv").assign(attnmoe_unlabeled_test=True)
    runs.to_csv(ours / "runs.csv", index=False)
    peers = _folder(tmp_path / "peers", [(a, 4951, "catboost", 0.3, 1.0, 1.0)])
    assert "Transductive" in markdown_report(combine.pool([ours, peers]))
