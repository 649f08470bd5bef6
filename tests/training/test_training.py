"""MLM training: exact one-pass masking, seeding, early stopping, failure handling."""

import math

import pytest
import torch

from attnmoe import (
    CBOW,
    AttentionConfig,
    BidirectionalAttention,
    ContinuousWordExperts,
    evaluate_mlm,
    mlm_loss,
    train_mlm,
)

from ..model.helpers import random_attention


def _grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("block", ["pure", "bert"])
@pytest.mark.parametrize("form", ["attention", "experts"])
def test_one_pass_loss_and_gradients_equal_masked_copies(block, form):
    model = random_attention(0, vocab_size=9, max_len=7, d_model=6, n_heads=2, block=block)
    if form == "experts":
        model = model.to_experts()
    x = torch.randint(0, 9, (5, 7), generator=torch.Generator().manual_seed(1))

    model.zero_grad()
    one_pass = mlm_loss(model, x, method="one_pass")
    one_pass.backward()
    grads_one_pass = _grads(model)

    model.zero_grad()
    copies = mlm_loss(model, x, method="copies")
    copies.backward()
    grads_copies = _grads(model)

    assert abs(one_pass.item() - copies.item()) <= 1e-6
    assert len(grads_one_pass) == len(grads_copies) > 0
    for a, b in zip(grads_one_pass, grads_copies, strict=True):
        assert (a - b).abs().max() <= 1e-6


def test_training_reduces_loss_and_learns_a_rule():
    # column 2 always equals column 0: a one-layer model must learn to look there
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (512, 4), generator=gen)
    x[:, 2] = x[:, 0]
    model = BidirectionalAttention(AttentionConfig(vocab_size=6, max_len=4, d_model=16))
    before = evaluate_mlm(model, x)
    history = train_mlm(model, x, epochs=30, batch_size=64, lr=1e-2, verbose=0)
    after = evaluate_mlm(model, x)
    assert after < before - 0.5
    assert history.train_loss[-1] < history.train_loss[0]
    predicted = model.masked_log_probs(x[:64], positions=2).argmax(-1).squeeze(-1)
    assert (predicted == x[:64, 0]).float().mean() > 0.95
    experts = model.to_experts()
    gate = experts.gates(x[:64], 2).mean((0, 1))  # (L,)
    assert gate.argmax().item() == 0  # the expert at location 0 drives the prediction


def test_same_seed_same_weights_different_seed_different():
    x = torch.randint(0, 5, (64, 4), generator=torch.Generator().manual_seed(0))

    def fit(seed):
        torch.manual_seed(123)
        config = AttentionConfig(vocab_size=5, max_len=4, d_model=8, dropout=0.1)
        model = BidirectionalAttention(config)
        train_mlm(model, x, epochs=3, batch_size=16, seed=seed, verbose=0)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(fit(7), fit(7))
    assert not torch.equal(fit(7), fit(8))


def test_deep_models_train_with_random_masking():
    x = torch.randint(0, 5, (64, 6), generator=torch.Generator().manual_seed(0))
    model = BidirectionalAttention(
        AttentionConfig(vocab_size=5, max_len=6, d_model=8, n_layers=2, block="bert")
    )
    history = train_mlm(model, x, epochs=2, batch_size=16, verbose=0)
    assert history.masked_predictions == 0  # random masking does not count all locations
    assert all(math.isfinite(v) for v in history.train_loss)
    with pytest.raises(ValueError, match="masking"):
        train_mlm(model, x, masking="sometimes", verbose=0)
    for lr in (0.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="lr must be a positive number"):
            train_mlm(model, x, lr=lr, verbose=0)


def test_early_stopping_restores_best_weights():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 8, (80, 5), generator=gen)  # pure noise: overfits quickly
    model = BidirectionalAttention(AttentionConfig(vocab_size=8, max_len=5, d_model=32))
    history = train_mlm(
        model, x, epochs=200, lr=3e-2, batch_size=16, validation=0.25, patience=3, verbose=0
    )
    assert history.stopped_early
    assert history.epochs_run < 200
    best = min(history.validation_loss)
    assert history.validation_loss[history.best_epoch - 1] == best
    # the restored model is the best one, not the last one
    val_idx = torch.randperm(80, generator=torch.Generator().manual_seed(0))[:20]
    assert evaluate_mlm(model, x[val_idx]) == pytest.approx(best, abs=1e-6)


def test_patience_needs_validation():
    model = BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=3))
    with pytest.raises(ValueError, match="validation"):
        train_mlm(model, torch.zeros(4, 3, dtype=torch.long), patience=2, verbose=0)


@pytest.mark.parametrize(
    ("engine", "masking"), [("torch", "all"), ("fused", "all"), ("fused", "copies")]
)
def test_average_last_returns_the_mean_of_the_last_epochs_weights(engine, masking):
    x = torch.randint(0, 6, (48, 4), generator=torch.Generator().manual_seed(0))
    config = AttentionConfig(vocab_size=6, max_len=4, d_model=8, n_heads=2, block="bert")
    snapshots = []

    def fit(average_last):
        torch.manual_seed(0)
        model = BidirectionalAttention(config)
        history = train_mlm(
            model,
            x,
            epochs=5,
            batch_size=16,
            masking=masking,
            average_last=average_last,
            engine=engine,
            verbose=0,
            on_epoch_end=lambda epoch, h: snapshots.append(
                [p.detach().clone() for p in model.parameters()]
            ),
        )
        return model, history

    plain, history = fit(0.0)
    assert history.averaged_epochs == 0
    for p, last in zip(plain.parameters(), snapshots[-1], strict=True):
        assert torch.equal(p, last)  # no averaging: the last epoch's weights
    trajectory = snapshots[:]
    snapshots.clear()
    averaged, history = fit(0.4)  # round(0.4 * 5) = 2: epochs 4 and 5
    assert history.averaged_epochs == 2
    # the same seed trains the same trajectory; only the returned weights differ
    for before, after in zip(trajectory, snapshots, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    for p, w4, w5 in zip(averaged.parameters(), snapshots[3], snapshots[4], strict=True):
        torch.testing.assert_close(p, (w4.double() + w5.double()).div(2).float())
    assert not all(
        torch.equal(p, w) for p, w in zip(averaged.parameters(), snapshots[4], strict=True)
    )
    _, history = fit(1.0)
    assert history.averaged_epochs == 5


def test_average_last_bad_values_are_refused():
    model = BidirectionalAttention(AttentionConfig(vocab_size=3, max_len=3))
    x = torch.zeros(8, 3, dtype=torch.long)
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="average_last"):
            train_mlm(model, x, average_last=bad, verbose=0)
    with pytest.raises(ValueError, match="early stopping"):
        train_mlm(model, x, average_last=0.5, validation=0.25, patience=2, verbose=0)


@pytest.mark.parametrize("engine", ["torch", "fused"])
@pytest.mark.parametrize("masking", ["copies", "all"])
def test_targets_with_nothing_to_predict_are_left_out(engine, masking):
    # many cells are the mask token (missing values); 43 x 3 = 129 copies in batches
    # of 128 leave a last batch of one copy, which must not be a mask target
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (43, 3), generator=gen)
    x[torch.rand(x.shape, generator=gen) < 0.6] = 4  # vocab 4: the mask id
    x[5] = 4  # one sentence with nothing to predict at all
    config = AttentionConfig(vocab_size=4, max_len=3, d_model=8, n_heads=2, block="bert")
    known = int((x != 4).sum())
    for seed in range(4):  # several shuffles: one of them would end on a mask target
        model = BidirectionalAttention(config)
        history = train_mlm(
            model, x, epochs=3, batch_size=128 if masking == "copies" else 1, masking=masking,
            engine=engine, seed=seed, verbose=0,
        )  # fmt: skip
        assert all(math.isfinite(v) for v in history.train_loss)
        if masking == "copies":
            assert history.masked_predictions == 3 * known
    with pytest.raises(ValueError, match="nothing to predict"):
        train_mlm(BidirectionalAttention(config), torch.full((4, 3), 4), masking=masking, verbose=0)


def test_weight_zero_and_padding_are_left_out_and_negative_weights_refused():
    x = torch.randint(0, 4, (10, 3), generator=torch.Generator().manual_seed(1))
    config = AttentionConfig(vocab_size=4, max_len=3, d_model=8, n_heads=2, block="bert")
    weights = torch.tensor([1.0, 0.0, 1.0])
    history = train_mlm(BidirectionalAttention(config), x, epochs=2, batch_size=7,
                        masking="copies", position_weights=weights, verbose=0)  # fmt: skip
    assert history.masked_predictions == 2 * 10 * 2  # location 1 weighs nothing
    keys = torch.ones(10, 3, dtype=torch.bool)
    keys[3] = False  # a sentence that is all padding: nothing to predict
    history = train_mlm(BidirectionalAttention(config), x, key_mask=keys, epochs=1,
                        batch_size=1, masking="all", verbose=0)  # fmt: skip
    assert history.masked_predictions == 9 * 3
    with pytest.raises(ValueError, match="position_weights"):
        train_mlm(BidirectionalAttention(config), x, position_weights=-weights, verbose=0)
    # average_last rounds half up: 0.5 of 5 epochs is 3
    history = train_mlm(BidirectionalAttention(config), x, epochs=5, average_last=0.5, verbose=0)
    assert history.averaged_epochs == 3


def test_nan_loss_stops_with_clear_error_and_keeps_finite_weights():
    model = BidirectionalAttention(AttentionConfig(vocab_size=4, max_len=3, d_model=4))
    with torch.no_grad():
        model.output.bias[0] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match="learning rate"):
        train_mlm(model, torch.zeros(8, 3, dtype=torch.long), epochs=1, verbose=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) or torch.isnan(before[k]).any()


@pytest.mark.parametrize("cls", [CBOW, ContinuousWordExperts])
def test_other_forms_share_the_trainer(cls):
    x = torch.randint(0, 6, (128, 5), generator=torch.Generator().manual_seed(0))
    x[:, 4] = x[:, 1]
    model = cls(AttentionConfig(vocab_size=6, max_len=5, d_model=8))
    before = evaluate_mlm(model, x)
    train_mlm(model, x, epochs=20, lr=1e-2, batch_size=32, verbose=0)
    assert evaluate_mlm(model, x) < before


def test_cbow_is_uniform_average_of_other_words():
    model = CBOW(AttentionConfig(vocab_size=5, max_len=4, d_model=3)).double()
    x = torch.tensor([[0, 1, 2, 3]])
    h = model.one_pass_hidden_states(x)
    alpha = model.context_vectors(x)[0]
    torch.testing.assert_close(h[0, 0], alpha[1:].mean(0))
    torch.testing.assert_close(h[0, 2], alpha[[0, 1, 3]].mean(0))
    torch.testing.assert_close(
        model.masked_log_probs(x), model.masked_log_probs(x, method="copies")
    )


def test_position_weights_focus_the_loss():
    model = random_attention(0, vocab_size=5, max_len=3)
    x = torch.randint(0, 5, (4, 3))
    only_last = mlm_loss(model, x, position_weights=torch.tensor([0.0, 0.0, 1.0]))
    log_probs = model.masked_log_probs(x, positions=2)[:, 0]
    expected = -log_probs.gather(1, x[:, 2:3]).mean()
    torch.testing.assert_close(only_last, expected)


@pytest.mark.parametrize("engine", ["auto", "torch"])
def test_token_ids_outside_the_vocabulary_are_refused(engine):
    model = BidirectionalAttention(AttentionConfig(vocab_size=6, max_len=5, d_model=4))
    for bad in (7, -1, 10**6):
        x = torch.randint(0, 6, (20, 5), generator=torch.Generator().manual_seed(0))
        x[3, 2] = bad
        with pytest.raises(ValueError, match=r"training token ids must lie in \[0, 6\]"):
            train_mlm(model, x, epochs=1, verbose=0, engine=engine)
        with pytest.raises(ValueError, match=r"validation token ids must lie in \[0, 6\]"):
            train_mlm(model, x.clamp(0, 6), validation=x, epochs=1, verbose=0, engine=engine)


def test_random_masking_never_predicts_the_mask_token():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (40, 5), generator=g)
    x[torch.rand(x.shape, generator=g) < 0.3] = 6  # missing values
    x[0] = 6  # a sentence with nothing to predict
    model = BidirectionalAttention(AttentionConfig(vocab_size=6, max_len=5, d_model=4, n_layers=2))
    history = train_mlm(model, x, epochs=2, batch_size=8, verbose=0)
    assert all(math.isfinite(v) for v in history.train_loss)
    with pytest.raises(ValueError, match="position_weights need masking"):
        train_mlm(model, x, position_weights=torch.ones(5), verbose=0)
    one = BidirectionalAttention(AttentionConfig(vocab_size=6, max_len=5, d_model=4))
    with pytest.raises(ValueError, match=r"position_weights must have shape \(5,\)"):
        train_mlm(one, x, position_weights=torch.ones(4), verbose=0)


def test_validation_fractions_of_any_number_type_and_patience_checked():
    import numpy as np

    x = torch.randint(0, 5, (40, 4), generator=torch.Generator().manual_seed(0))
    model = BidirectionalAttention(AttentionConfig(vocab_size=5, max_len=4, d_model=8))
    for fraction in (np.float32(0.25), 0, np.float64(0.0)):
        history = train_mlm(model, x, epochs=1, validation=fraction, verbose=0)
        assert len(history.validation_loss) == (1 if fraction else 0)
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="patience must be None or >= 1"):
            train_mlm(model, x, epochs=1, validation=0.25, patience=bad, verbose=0)


def test_validation_key_mask_only_with_validation_ids():
    x = torch.randint(0, 5, (40, 4), generator=torch.Generator().manual_seed(0))
    keys = torch.ones(40, 4, dtype=torch.bool)
    model = BidirectionalAttention(AttentionConfig(vocab_size=5, max_len=4, d_model=8))
    with pytest.raises(ValueError, match="validation_key_mask goes with validation token ids"):
        train_mlm(model, x, epochs=1, validation=0.25, validation_key_mask=keys[:10], verbose=0)
    history = train_mlm(
        model, x[:30], epochs=1, validation=x[30:], validation_key_mask=keys[30:], verbose=0
    )
    assert len(history.validation_loss) == 1
