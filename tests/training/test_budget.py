"""``train_mlm(max_steps=...)``: a cap on optimizer steps, the last epoch stopped part-way."""

from __future__ import annotations

import math

import pytest
import torch

from attnmoe import AttentionConfig, BidirectionalAttention
from attnmoe.training import train_mlm
from attnmoe.training.fused import fused_supported


def _model(seed: int = 0) -> BidirectionalAttention:
    torch.manual_seed(seed)
    cfg = AttentionConfig(vocab_size=12, max_len=4, d_model=8, n_heads=2, n_layers=1, d_ff=4)
    return BidirectionalAttention(cfg)


def _data(n: int = 40) -> torch.Tensor:
    return torch.randint(0, 12, (n, 4), generator=torch.Generator().manual_seed(1))


ENGINES = ["torch", "fused"]
MASKINGS = ["copies", "all"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("masking", MASKINGS)
def test_the_cap_stops_part_way_through_an_epoch(engine, masking):
    if engine == "fused" and not fused_supported(_model()):
        pytest.skip("numba missing")
    data = _data()
    items = data.numel() if masking == "copies" else len(data)
    per_epoch = math.ceil(items / 16)
    cap = 2 * per_epoch + 1  # two epochs and one step
    history = train_mlm(
        _model(), data, epochs=10, max_steps=cap, batch_size=16, masking=masking,
        engine=engine, verbose=0,
    )  # fmt: skip
    assert history.steps == cap
    assert history.epochs_run == 3
    unit = 1 if masking == "copies" else data.shape[1]
    assert history.masked_predictions == (2 * items + 16) * unit


@pytest.mark.parametrize("engine", ENGINES)
def test_a_cap_above_the_epochs_changes_nothing(engine):
    if engine == "fused" and not fused_supported(_model()):
        pytest.skip("numba missing")
    data, runs = _data(), []
    for cap in (None, 10**6):
        model = _model()
        history = train_mlm(
            model, data, epochs=3, max_steps=cap, batch_size=16, masking="copies",
            engine=engine, verbose=0,
        )  # fmt: skip
        runs.append((model.state_dict(), history))
    (first, h1), (second, h2) = runs
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert h1.train_loss == h2.train_loss and h1.steps == h2.steps == 3 * math.ceil(160 / 16)


def test_the_capped_run_is_the_start_of_the_uncapped_one():
    """The cap only truncates: the same order, the same first steps."""
    data = _data()
    capped, full = _model(), _model()
    train_mlm(capped, data, epochs=5, max_steps=10, batch_size=16, masking="copies",
              engine="torch", verbose=0)  # fmt: skip
    train_mlm(full, data, epochs=1, batch_size=16, masking="copies", engine="torch",
              verbose=0)  # fmt: skip
    assert all(
        torch.equal(a, b)
        for a, b in zip(capped.state_dict().values(), full.state_dict().values(), strict=True)
    )


def test_average_last_counts_the_epochs_begun():
    history = train_mlm(
        _model(), _data(), epochs=50, max_steps=25, batch_size=16, masking="copies",
        average_last=0.5, engine="torch", verbose=0,
    )  # fmt: skip
    assert history.epochs_run == 3 and history.averaged_epochs == 2  # round(0.5 * 3)


@pytest.mark.parametrize("cap", [0, -1, 2.5, True])
def test_a_bad_cap_is_refused(cap):
    with pytest.raises(ValueError, match="max_steps"):
        train_mlm(_model(), _data(), epochs=1, max_steps=cap, verbose=0)
