"""The learning-rate schedule of :func:`train_mlm`: the same in every engine."""

import math

import numpy as np
import pytest
import torch

from attnmoe import AttentionConfig, BidirectionalAttention, train_mlm
from attnmoe.training.options import lr_factor


def _model(seed=9):
    torch.manual_seed(seed)
    config = AttentionConfig(vocab_size=10, max_len=6, d_model=20, n_heads=5, d_head=4, d_ff=5)
    return BidirectionalAttention(config).double()


def _tokens():
    return torch.randint(0, 10, (48, 6), generator=torch.Generator().manual_seed(4))


def test_lr_factor_falls_from_one_toward_zero():
    assert [lr_factor("constant", e, 4) for e in range(4)] == [1.0] * 4
    assert [lr_factor("linear", e, 4) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]
    cosine = [lr_factor("cosine", e, 4) for e in range(4)]
    assert cosine[0] == 1.0 and cosine[2] == pytest.approx(0.5)
    assert cosine[3] == pytest.approx(0.5 * (1 + math.cos(0.75 * math.pi)))


@pytest.mark.parametrize("masking", ["all", "copies"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_every_engine_follows_the_schedule(schedule, masking):
    runs = []
    for engine in ("torch", "fused"):
        model = _model()
        history = train_mlm(
            model, _tokens(), epochs=4, batch_size=16, lr=1e-2, lr_schedule=schedule,
            masking=masking, seed=1, verbose=0, engine=engine,
        )  # fmt: skip
        runs.append((np.array(history.train_loss), model.output.weight.detach()))
    assert np.allclose(runs[0][0], runs[1][0], rtol=1e-6, atol=0)
    assert torch.allclose(runs[0][1], runs[1][1], atol=1e-6, rtol=0)


def test_the_schedule_changes_training_after_the_first_epoch_only():
    def fit(schedule, epochs):
        model = _model()
        train_mlm(model, _tokens(), epochs=epochs, batch_size=16, lr=1e-2,
                  lr_schedule=schedule, seed=1, verbose=0)  # fmt: skip
        return model.output.weight.detach()

    # the first epoch trains at the full rate, later ones slower
    assert torch.equal(fit("constant", 1), fit("linear", 1))
    constant, linear = fit("constant", 3), fit("linear", 3)
    assert not torch.allclose(constant, linear)
    # smaller late steps: the weights move less from where one epoch left them
    first = fit("constant", 1)
    assert (linear - first).norm() < (constant - first).norm()


def test_a_bad_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule must be"):
        train_mlm(_model(), _tokens(), epochs=1, lr_schedule="step", verbose=0)
