"""Experts-form tables (attnmoe.model.tables) give the models' own masked predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnmoe import AttentionConfig, ContinuousWordExperts
from attnmoe.model.tables import ExpertTables, MemberTables, covered

from .helpers import random_attention

VOCAB, LENGTH, CLASSES = 7, 6, 4


def _codes(seed: int, batch: int, fractional: bool) -> np.ndarray:
    """Random codes: words, mask cells, and (``fractional``) codes between two words."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, VOCAB + 1, (batch, LENGTH))  # VOCAB is the mask id
    if fractional:
        x = x.astype(float)
        between = rng.random((batch, LENGTH)) < 0.5
        # a fractional code stays below VOCAB - 1: it never interpolates into the mask
        x[between] = rng.random(between.sum()) * (VOCAB - 1)
        x[0, 1] = VOCAB - 1.5
    x[:, -1] = VOCAB  # the predicted location masked, as the estimator gives it
    return x


def _torch_probabilities(model, x: np.ndarray, location: int = LENGTH - 1) -> np.ndarray:
    with torch.no_grad():
        logits = model.masked_logits(torch.as_tensor(x), positions=location)[:, 0, :CLASSES]
        return torch.softmax(logits, -1).numpy()


def _random_experts(seed: int, **config) -> ContinuousWordExperts:
    """An experts-form model with free tables (no attention form behind them)."""
    generator = torch.Generator().manual_seed(seed)
    model = ContinuousWordExperts(AttentionConfig(**config)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.7)
    return model


def _model(form: str, block: str, activation: str, n_heads: int, seed: int = 0):
    config = {"vocab_size": VOCAB, "max_len": LENGTH, "d_model": 8, "n_heads": n_heads,
              "d_head": 3, "d_ff": 5, "block": block, "activation": activation}  # fmt: skip
    if form == "experts":
        return _random_experts(seed, **config)
    model = random_attention(seed, **config)
    return model.to_experts() if form == "converted" else model


@pytest.mark.parametrize("form", ["attention", "converted", "experts"])
@pytest.mark.parametrize(
    "block, activation", [("bert", "relu"), ("bert", "gelu"), ("pure", "relu")]
)
@pytest.mark.parametrize("n_heads", [1, 3])
@pytest.mark.parametrize("fractional", [False, True], ids=["whole", "fractional"])
def test_tables_give_the_models_masked_probabilities(form, block, activation, n_heads, fractional):
    model = _model(form, block, activation, n_heads)
    x = _codes(1, 300, fractional)
    tables = ExpertTables.of([model], CLASSES)
    got = tables.probabilities(x)
    np.testing.assert_allclose(got, _torch_probabilities(model, x), rtol=0, atol=1e-12)
    # the NumPy fallback (no numba) gives the same numbers
    fallback = np.zeros_like(got)
    tables.members[0]._add_probabilities_numpy(x, fallback)
    np.testing.assert_allclose(fallback, got, rtol=0, atol=1e-13)


def test_an_ensemble_averages_its_members():
    models = [_model("attention", "bert", "relu", 2, seed) for seed in range(3)]
    x = _codes(2, 50, True)
    expected = np.mean([_torch_probabilities(m, x) for m in models], 0)
    got = ExpertTables.of(models, CLASSES).probabilities(x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_a_row_does_not_depend_on_the_rows_beside_it():
    tables = ExpertTables.of([_model("attention", "bert", "gelu", 3)], CLASSES)
    x = _codes(3, 40, True)
    together = tables.probabilities(x)
    for k in (0, 17, 39):
        assert np.array_equal(tables.probabilities(x[k : k + 1])[0], together[k])


def test_the_predicted_location_is_masked_whatever_it_holds():
    model = _model("attention", "bert", "relu", 2)
    x = _codes(4, 20, False)
    tables = ExpertTables.of([model], CLASSES)
    filled = x.copy()
    filled[:, -1] = np.arange(20) % VOCAB
    assert np.array_equal(tables.probabilities(filled), tables.probabilities(x))
    # another location, as masked_logits predicts it
    inner = ExpertTables.of([model], CLASSES, location=2)
    np.testing.assert_allclose(
        inner.probabilities(filled), _torch_probabilities(model, filled, 2), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("fractional", [False, True], ids=["whole", "fractional"])
def test_gates_far_below_the_tables_top_are_computed_with_the_rows_own_shift(fractional):
    # one (location, word) scores 2,000 above the rest: a row without it has every
    # exp(score - table top) underflow to 0, and must still get its softmax
    model = _model("experts", "bert", "relu", 2)
    with torch.no_grad():
        model.word_layer.gate_key[:, 0, 3] = model.word_layer.gate_query[:, -1, VOCAB] * 1e3
    x = _codes(5, 200, fractional)
    x[:100, 0] = 3  # half the rows hold that word
    tables = ExpertTables.of([model], CLASSES)
    assert tables.members[0].scores.max() > 1e3
    got = tables.probabilities(x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, _torch_probabilities(model, x), rtol=0, atol=1e-12)


def test_codes_are_checked_as_the_model_checks_them():
    tables = ExpertTables.of([_model("attention", "bert", "relu", 1)], CLASSES)
    with pytest.raises(ValueError, match="must lie in"):
        tables.probabilities(np.full((2, LENGTH), VOCAB + 1))
    with pytest.raises(ValueError, match=r"must not\s+interpolate into the mask id"):
        tables.probabilities(np.full((2, LENGTH), VOCAB - 0.5))
    with pytest.raises(ValueError, match=r"codes must be \(batch, length\)"):
        tables.probabilities(np.zeros((2, LENGTH + 1), dtype=int))


def test_models_the_tables_do_not_cover():
    base = {"vocab_size": VOCAB, "max_len": LENGTH, "d_model": 8, "n_heads": 2}
    for extra in ({"n_layers": 2}, {"top_k": 2}, {"window": 1}):
        assert not covered(random_attention(0, **base, **extra))
    assert not covered(random_attention(0, dtype=torch.float32, **base))
    assert not covered(random_attention(0, **base).train())
    model = random_attention(0, **base)
    assert covered(model)
    assert ExpertTables.of([model, random_attention(0, **base, n_layers=2)], CLASSES) is None
    assert isinstance(ExpertTables.of([model], CLASSES).members[0], MemberTables)
