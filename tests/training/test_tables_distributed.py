"""The tabular entry of the data-parallel trainer: rows and masked copies as windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnmoe import AttentionConfig, BidirectionalAttention
from attnmoe.training.distributed.tables import RowSource, train_rows_distributed

MASK = 12


def _tokens(n: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, MASK, (n, 4))
    tokens[::7, 3] = MASK  # unlabelled rows: their target is the mask token
    return tokens


def _model() -> BidirectionalAttention:
    torch.manual_seed(0)
    cfg = AttentionConfig(vocab_size=MASK, max_len=4, d_model=8, n_heads=2, d_ff=4, dropout=0.0)
    return BidirectionalAttention(cfg)


def _max_diff(a, b, skip: tuple[str, ...] = ()) -> float:
    pairs = zip(a.named_parameters(), b.named_parameters(), strict=True)
    return max((p - q).abs().max().item() for (name, p), (_, q) in pairs if not name.endswith(skip))


def test_copies_are_every_known_cell_once_with_its_location_last():
    tokens = _tokens()
    source = RowSource(tokens, MASK, "copies", seed=3)
    assert source.window == 5 and len(source) == int((tokens != MASK).sum())
    windows = source.windows(0, len(source)).numpy()
    rows = windows[:, :4]
    cells = rows[np.arange(len(rows)), windows[:, 4]]
    assert (cells != MASK).all()
    seen = {(tuple(r), int(loc)) for r, loc in zip(rows, windows[:, 4], strict=True)}
    assert len(seen) == len(source)  # each (row, location) once (rows are distinct here)
    rows_source = RowSource(tokens, MASK, "all", seed=3)
    assert rows_source.window == 4 and len(rows_source) == len(tokens)


def test_two_processes_equal_one_on_masked_copies():
    one, two = _model(), _model()
    h1 = train_rows_distributed(one, _tokens(), epochs=2, batch_size=32, lr=1e-2, nproc=1)
    h2 = train_rows_distributed(
        two, _tokens(), epochs=2, batch_size=32, lr=1e-2, nproc=2, num_threads=1
    )
    assert h1.steps == h2.steps == 2 * (int((_tokens() != MASK).sum()) // 32)
    # b_K's gradient is exactly zero (it cancels in the softmax); in float32 Adam turns
    # its rounding noise into lr-sized steps (as in test_distributed.py)
    assert _max_diff(one, two, skip=("key.bias",)) <= 1e-5
    assert h1.masked_predictions == h2.masked_predictions == h1.steps * 32


def test_the_step_cap_and_resume_are_exact(tmp_path):
    whole, part = _model(), _model()
    kwargs = {"epochs": 3, "batch_size": 32, "lr": 1e-2}
    train_rows_distributed(whole, _tokens(), max_steps=8, **kwargs)
    train_rows_distributed(part, _tokens(), max_steps=4, checkpoint_dir=tmp_path, **kwargs)
    h = train_rows_distributed(
        part, _tokens(), max_steps=8, checkpoint_dir=tmp_path, resume=True, **kwargs
    )
    assert h.start_step == 4 and h.steps == 8
    assert _max_diff(whole, part) <= 1e-6


def test_a_table_smaller_than_a_batch_is_refused():
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_rows_distributed(_model(), _tokens(4), epochs=1, batch_size=128)


def test_rows_with_the_mask_token_need_copies():
    with pytest.raises(ValueError, match="masked copies only"):
        train_rows_distributed(_model(), _tokens(), epochs=1, batch_size=8, masking="all")
