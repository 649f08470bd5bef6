"""Training on continuous word codes (torch engine): soft targets, every masking."""

import numpy as np
import pytest
import torch

from attnmoe import mlm_loss, train_mlm
from attnmoe.training import evaluate_mlm, masked_copies_loss, random_mask_loss

from ..model.helpers import random_attention


def _codes(seed: int, n: int, length: int, vocab_size: int, missing: float = 0.1) -> torch.Tensor:
    """Fractional codes below vocab_size - 1, some whole ones and some mask tokens."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, length, generator=generator, dtype=torch.float64) * (vocab_size - 1)
    whole = torch.rand(n, length, generator=generator) < 0.3
    x[whole] = x[whole].floor()
    x[torch.rand(n, length, generator=generator) < missing] = vocab_size
    return x


def _soft_losses(model, x):
    """(B, L): -(1 - t) log p(lo) - t log p(lo + 1) at each location masked alone."""
    log_probs = model.masked_log_probs(x, method="copies")
    lo = x.floor().long().clamp_max(model.config.vocab_size - 1)
    t = x - x.floor()
    hi = (lo + 1).clamp_max(model.config.vocab_size - 1)
    low = log_probs.gather(-1, lo.unsqueeze(-1)).squeeze(-1)
    high = log_probs.gather(-1, hi.unsqueeze(-1)).squeeze(-1)
    return -((1 - t) * low + t * high)


@pytest.mark.parametrize("vocab_size", [6, 80])  # written-out and torch's cross-entropy
def test_a_fractional_target_is_the_soft_mix_of_its_two_words(vocab_size):
    model = random_attention(0, vocab_size=vocab_size, max_len=5, d_model=6, n_heads=2)
    x = _codes(1, 8, 5, vocab_size)
    weights = torch.rand(8, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    known = (x != vocab_size).double() * weights
    expected = (_soft_losses(model, x) * known).sum() / known.sum()
    torch.testing.assert_close(mlm_loss(model, x, position_weights=weights), expected,
                               atol=1e-12, rtol=0)  # fmt: skip

    locations = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(3))
    rows = torch.arange(8)
    picked = known[rows, locations]
    expected = (_soft_losses(model, x)[rows, locations] * picked).sum() / picked.sum()
    got = masked_copies_loss(model, x, locations, weights)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_whole_float_codes_give_the_integer_losses_exactly():
    model = random_attention(4, vocab_size=6, max_len=5, d_model=6, n_heads=2, n_layers=2)
    x = torch.randint(0, 7, (6, 5), generator=torch.Generator().manual_seed(5))
    assert torch.equal(mlm_loss(model, x.double()), mlm_loss(model, x))
    losses = [
        random_mask_loss(model, codes, torch.Generator().manual_seed(6))
        for codes in (x, x.double())
    ]
    assert torch.equal(losses[0], losses[1])


def test_random_masking_takes_fractional_codes():
    model = random_attention(7, vocab_size=6, max_len=5, d_model=6, n_layers=2)
    x = _codes(8, 10, 5, 6)
    loss = random_mask_loss(model, x, torch.Generator().manual_seed(0), mask_prob=1.0)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.token_embedding.weight.grad.abs().sum() > 0


def _train(x, engine="torch", **kwargs):
    model = random_attention(11, vocab_size=6, max_len=5, d_model=8, n_heads=2).float().train()
    history = train_mlm(model, x, epochs=3, batch_size=8, verbose=0, engine=engine, seed=3,
                        **kwargs)  # fmt: skip
    return history, model


# the estimator's calls: masked copies (with context hiding) or all locations per row,
# per-sentence weights, a validation split with early stopping, weight averaging
ESTIMATOR_CALLS = [
    dict(masking="copies"),
    dict(masking="copies", context_mask_rate=0.3),
    dict(masking="all"),
    dict(masking="all", validation=0.25, patience=2),
    dict(masking="copies", average_last=0.5),
]


@pytest.mark.parametrize("kwargs", ESTIMATOR_CALLS)
def test_training_on_whole_float_codes_equals_training_on_ids(kwargs):
    ids = _codes(12, 40, 5, 6).floor().long()
    weights = torch.rand(40, 5, generator=torch.Generator().manual_seed(13)) + 0.5
    runs = [_train(x, position_weights=weights, **kwargs) for x in (ids, ids.double())]
    assert runs[0][0].train_loss == runs[1][0].train_loss
    for a, b in zip(runs[0][1].parameters(), runs[1][1].parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs", ESTIMATOR_CALLS)
def test_training_on_fractional_codes(kwargs):
    x = _codes(14, 40, 5, 6)
    history, model = _train(x, **kwargs)
    assert all(np.isfinite(history.train_loss))
    _, floor_model = _train(x.floor(), **kwargs)  # the codes' fractions change the fit
    assert not torch.equal(model.output.weight, floor_model.output.weight)
    assert np.isfinite(evaluate_mlm(model, x))
    assert np.isfinite(evaluate_mlm(model, x.numpy()))


def test_training_refuses_codes_outside_the_convention():
    model = random_attention(15, vocab_size=6, max_len=5, d_model=4)
    x = _codes(16, 10, 5, 6)
    for bad, message in ((5.5, "interpolate into the mask id"), (float("nan"), "finite"),
                         (-1.0, r"lie in \[0, 6\]")):  # fmt: skip
        broken = x.clone()
        broken[2, 3] = bad
        with pytest.raises(ValueError, match="training token ids.*" + message):
            train_mlm(model, broken, epochs=1, verbose=0)
        with pytest.raises(ValueError, match="validation token ids.*" + message):
            train_mlm(model, x, validation=broken, epochs=1, verbose=0)
    with pytest.raises(TypeError, match="float32 or float64"):
        train_mlm(model, x.half(), epochs=1, verbose=0)
