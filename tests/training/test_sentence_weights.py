"""Loss weights per sentence and location (``position_weights`` of shape ``(N, L)``):
what the estimators' ``sample_weight`` becomes in :func:`attnmoe.training.train_mlm`."""

import pytest
import torch

from attnmoe import AttentionConfig, BidirectionalAttention, train_mlm

CONFIG = AttentionConfig(vocab_size=4, max_len=3, d_model=8, n_heads=2, block="bert", dropout=0.0)


def _tokens(n=12):
    return torch.randint(0, 4, (n, 3), generator=torch.Generator().manual_seed(1))


def _fit(x, weights, **options):
    torch.manual_seed(0)
    model = BidirectionalAttention(CONFIG)
    options = {"epochs": 3, "batch_size": 5, "verbose": 0, "engine": "torch", **options}
    return model, train_mlm(model, x, position_weights=weights, **options)


@pytest.mark.parametrize("masking", ["all", "copies"])
def test_equal_rows_of_weights_train_as_weights_per_location(masking):
    x = _tokens()
    locations = torch.tensor([1.0, 1.0, 3.0])
    a, first = _fit(x, locations, masking=masking)
    b, second = _fit(x, locations.expand(len(x), 3).clone(), masking=masking)
    assert first.train_loss == second.train_loss
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("masking", ["all", "copies"])
def test_sentences_weighted_zero_are_left_out(masking):
    x = _tokens()
    weights = torch.ones(len(x), 3)
    weights[:4] = 0.0
    _, history = _fit(x, weights, masking=masking, epochs=1)
    assert history.masked_predictions == 8 * 3
    # and they follow their sentences through a validation split
    _, history = _fit(x, weights, masking=masking, validation=0.25)
    assert history.validation_loss


def test_weights_per_sentence_are_checked_and_not_fused():
    x = _tokens()
    with pytest.raises(ValueError, match="must have 12 rows, got 5"):
        _fit(x, torch.ones(5, 3))
    with pytest.raises(ValueError, match=r"shape \(3,\) or \(12, 3\)"):
        _fit(x, torch.ones(12, 2))
    with pytest.raises(ValueError, match="not per sentence"):
        _fit(x, torch.ones(12, 3), engine="fused")


def test_auto_engine_trains_weights_per_sentence_with_torch():
    x = _tokens()
    weights = torch.rand(len(x), 3, generator=torch.Generator().manual_seed(2))
    _, auto = _fit(x, weights, engine="auto", masking="copies")
    _, torch_engine = _fit(x, weights, engine="torch", masking="copies")
    assert auto.train_loss == torch_engine.train_loss
