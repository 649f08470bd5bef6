"""Loss weights per sentence and location (``position_weights`` of shape ``(N, L)``):
what the estimators' ``sample_weight`` becomes in :func:`attnmoe.training.train_mlm`."""

import pytest
import torch

from attnmoe import AttentionConfig, BidirectionalAttention, train_mlm
from attnmoe.training.fused import fused_mlm_step
from attnmoe.training.losses import mlm_loss

CONFIG = AttentionConfig(vocab_size=4, max_len=3, d_model=8, n_heads=2, block="bert", dropout=0.0)


def _tokens(n=12):
    return torch.randint(0, 4, (n, 3), generator=torch.Generator().manual_seed(1))


def _fit(x, weights, double=False, **options):
    torch.manual_seed(0)
    model = BidirectionalAttention(CONFIG)
    model = model.double() if double else model
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


def test_weights_per_sentence_are_checked():
    x = _tokens()
    with pytest.raises(ValueError, match="must have 12 rows, got 5"):
        _fit(x, torch.ones(5, 3))
    with pytest.raises(ValueError, match=r"shape \(3,\) or \(12, 3\)"):
        _fit(x, torch.ones(12, 2))


@pytest.mark.parametrize(
    ("masking", "threads"), [("all", 1), ("all", 2), ("copies", 1)]
)  # fused: whole compiled epochs on one thread, batches split across threads on two
def test_the_fused_engine_weighs_sentences_as_torch(masking, threads):
    x = _tokens(40)
    weights = torch.rand(len(x), 3, generator=torch.Generator().manual_seed(2))
    weights[:5] = 0.0
    options = {"masking": masking, "num_threads": threads, "batch_size": 8, "double": True}
    fused_model, fused = _fit(x, weights.double(), engine="fused", **options)
    torch_model, reference = _fit(x, weights.double(), engine="torch", **options)
    # the same trajectory (float64; only Adam's implementation differs)
    assert fused.train_loss == pytest.approx(reference.train_loss, rel=1e-6)
    for p, q in zip(fused_model.parameters(), torch_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    # equal rows of weights: the very numbers of weights per location
    locations = torch.tensor([1.0, 0.5, 2.0])
    _, per_location = _fit(x, locations, engine="fused", **options)
    _, per_sentence = _fit(x, locations.expand(len(x), 3).clone(), engine="fused", **options)
    assert per_sentence.train_loss == per_location.train_loss


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_loss_and_gradients_with_weights_per_sentence_equal_the_reference(threads):
    torch.manual_seed(0)
    model = BidirectionalAttention(CONFIG).double()
    x = _tokens(9)
    weights = torch.rand(9, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model.zero_grad(set_to_none=True)
    expected = mlm_loss(model, x, position_weights=weights)
    expected.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    loss = fused_mlm_step(model, x, weights, num_threads=threads)
    torch.testing.assert_close(loss, expected.detach(), rtol=0, atol=1e-10)
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=1e-10)
