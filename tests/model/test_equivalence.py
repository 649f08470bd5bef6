"""The two forms compute the same masked-word distributions (paper section 2)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnmoe import AttentionConfig, BidirectionalAttention, ContinuousWordExperts

from .helpers import random_attention


@st.composite
def models_and_sentences(draw):
    heads = draw(st.integers(1, 4))
    d_head = draw(st.integers(1, 4))
    config = dict(
        vocab_size=draw(st.integers(2, 12)),
        max_len=draw(st.integers(2, 8)),
        n_heads=heads,
        d_head=d_head,
        d_model=draw(st.sampled_from([heads * d_head, 2, 5])),
        n_layers=draw(st.integers(1, 3)),
        block=draw(st.sampled_from(["pure", "bert"])),
        bias=draw(st.booleans()),
        d_ff=draw(st.integers(1, 6)),
        activation=draw(st.sampled_from(["relu", "gelu"])),
    )
    length = draw(st.integers(1, config["max_len"]))
    batch = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    return config, length, batch, seed


TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
# float32 carries ~1e-7 relative rounding per operation: at weight scale 0.5 deep
# random models reach log-probs near -25 where that alone is ~1e-5 absolute, so
# the float32 check uses realistic weight scales (trained models sit well below).
WEIGHT_STD = {torch.float64: 0.5, torch.float32: 0.3}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@settings(max_examples=40, deadline=None)
@given(case=models_and_sentences())
def test_attention_and_experts_agree(dtype, case):
    config, length, batch, seed = case
    attention = random_attention(seed, dtype=dtype, std=WEIGHT_STD[dtype], **config)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, config["vocab_size"], (batch, length), generator=gen)

    reference = attention.masked_log_probs(x, method="copies")
    experts = attention.to_experts()
    assert isinstance(experts, ContinuousWordExperts)
    got = experts.masked_log_probs(x)
    assert (got - reference).abs().max() <= TOLERANCE[dtype]

    back = experts.to_attention()
    assert (back.masked_log_probs(x) - reference).abs().max() <= TOLERANCE[dtype] * 10


def test_experts_are_location_specific_and_gates_sum_to_one():
    model = random_attention(1, vocab_size=5, max_len=4, d_model=4, n_heads=2)
    experts = ContinuousWordExperts.from_attention(model)
    x = torch.tensor([[1, 1, 1, 1]])
    alpha = experts.experts(x)  # same word at every location
    assert alpha.shape == (1, 2, 4, 4)
    assert (alpha[:, :, 0] - alpha[:, :, 1]).abs().max() > 1e-3  # positional: differ
    gates = experts.gates(x, 2)
    assert gates.shape == (1, 2, 4)
    torch.testing.assert_close(gates.sum(-1), torch.ones(1, 2, dtype=gates.dtype))
    # expert i at the masked location holds the mask token
    masked = experts.experts(x, i=2)
    mask_row = experts.word_layer.experts[:, 2, model.config.mask_id]
    torch.testing.assert_close(masked[0, :, 2], mask_row)


def test_gates_match_attention_weights():
    model = random_attention(2, vocab_size=6, max_len=5, d_model=6, n_heads=3, n_layers=2)
    experts = model.to_experts()
    x = torch.randint(0, 6, (2, 5))
    masked = x.clone()
    masked[:, 3] = model.config.mask_id
    for ours, theirs in zip(
        experts.gate_matrices(x, 3), model.attention_weights(masked), strict=True
    ):
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_pure_layers_compose_into_one_effective_gate(layers):
    model = random_attention(
        3, vocab_size=6, max_len=5, d_model=4, n_heads=2, n_layers=layers, std=0.4
    )
    experts = model.to_experts()
    x = torch.randint(0, 6, (3, 5))
    i = 1
    gates = experts.effective_gates(x, i)
    assert gates.shape == (3, 2**layers, 5)
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, 2**layers, dtype=gates.dtype))
    alpha, constant = experts.effective_experts(x, i)
    hidden = torch.einsum("bpl,bpld->bd", gates, alpha) + constant
    masked = x.clone()
    masked[:, i] = model.config.mask_id
    torch.testing.assert_close(hidden, model.hidden_states(masked)[:, i], atol=1e-10, rtol=0)


def test_effective_gates_refuse_bert_form():
    experts = random_attention(0, vocab_size=4, max_len=3, block="bert").to_experts()
    with pytest.raises(ValueError, match="pure form"):
        experts.effective_gates(torch.zeros(1, 3, dtype=torch.long), 0)


def test_general_experts_without_attention_structure_do_not_convert():
    torch.manual_seed(0)
    config = AttentionConfig(vocab_size=6, max_len=5, d_model=2, n_heads=1)
    experts = ContinuousWordExperts(config).double()  # random tables: full rank
    with pytest.raises(ValueError, match=r"no attention form|not additive|span"):
        experts.to_attention()


def test_random_experts_train_and_predict_like_any_model():
    config = AttentionConfig(vocab_size=5, max_len=4, d_model=3)
    experts = ContinuousWordExperts(config)
    x = torch.randint(0, 5, (2, 4))
    one_pass = experts.masked_log_probs(x)
    copies = experts.masked_log_probs(x, method="copies")
    torch.testing.assert_close(one_pass, copies, atol=1e-5, rtol=0)


def test_one_pass_matches_copies_with_padding():
    model = random_attention(4, vocab_size=7, max_len=6, d_model=4, n_heads=2)
    x = torch.randint(0, 7, (3, 6))
    keys = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]]).bool()
    a = model.masked_log_probs(x, key_mask=keys, method="one_pass")
    b = model.masked_log_probs(x, key_mask=keys, method="copies")
    keep = keys.unsqueeze(-1).expand_as(a)
    torch.testing.assert_close(a[keep], b[keep], atol=1e-12, rtol=0)
    c = model.to_experts().masked_log_probs(x, key_mask=keys)
    torch.testing.assert_close(a[keep], c[keep], atol=1e-12, rtol=0)


def test_one_pass_refused_for_deep_models():
    model = BidirectionalAttention(AttentionConfig(vocab_size=4, max_len=3, n_layers=2))
    with pytest.raises(ValueError, match="one-layer"):
        model.masked_logits(torch.zeros(1, 3, dtype=torch.long), method="one_pass")


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.zeros(3, dtype=torch.long), "batch, length"),
        (torch.zeros(1, 9, dtype=torch.long), "max_len"),
        (torch.full((1, 3), 99), "token ids"),
        (torch.zeros(1, 3, dtype=torch.float16), "integer"),  # float32/64 codes are valid
    ],
)
def test_bad_input_is_refused_clearly(x, message):
    model = BidirectionalAttention(AttentionConfig(vocab_size=4, max_len=5))
    with pytest.raises((ValueError, TypeError), match=message):
        model.masked_log_probs(x)


def test_positions_argument_forms():
    model = random_attention(5, vocab_size=5, max_len=4)
    x = torch.randint(0, 5, (2, 4))
    full = model.masked_log_probs(x)
    torch.testing.assert_close(model.masked_log_probs(x, 2)[:, 0], full[:, 2])
    torch.testing.assert_close(model.masked_log_probs(x, [3, 0]), full[:, [3, 0]])
    per_row = torch.tensor([[1], [2]])
    got = model.masked_log_probs(x, per_row)
    torch.testing.assert_close(got[:, 0], torch.stack([full[0, 1], full[1, 2]]))
    with pytest.raises(ValueError, match="positions"):
        model.masked_log_probs(x, [4])


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("knobs", [dict(top_k=2), dict(window=1), dict(top_k=3, window=2)])
def test_sparse_gates_keep_the_forms_equal(knobs, layers):
    model = random_attention(
        6, vocab_size=7, max_len=6, d_model=4, n_heads=2, n_layers=layers, block="bert", **knobs
    )
    x = torch.randint(0, 7, (3, 6), generator=torch.Generator().manual_seed(0))
    reference = model.masked_log_probs(x, method="copies")
    torch.testing.assert_close(
        model.to_experts().masked_log_probs(x), reference, atol=1e-10, rtol=0
    )
    if layers == 1:
        one_pass = model.masked_log_probs(x, method="one_pass")
        torch.testing.assert_close(one_pass, reference, atol=1e-10, rtol=0)
    gates = model.to_experts().gate_matrices(x, 2)[-1]
    if "top_k" in knobs:
        assert ((gates > 0).sum(-1) <= knobs["top_k"]).all()
    if "window" in knobs:
        far = (torch.arange(6)[:, None] - torch.arange(6)[None, :]).abs() > knobs["window"]
        assert (gates[..., far] == 0).all()


def test_dense_when_top_k_covers_every_location():
    dense = random_attention(7, vocab_size=5, max_len=4, n_heads=2, d_model=4)
    sparse = random_attention(7, vocab_size=5, max_len=4, n_heads=2, d_model=4, top_k=4, window=9)
    x = torch.randint(0, 5, (2, 4))
    assert torch.equal(dense.masked_log_probs(x), sparse.masked_log_probs(x))


@pytest.mark.parametrize("bad", [dict(top_k=0), dict(window=-1), dict(top_k=1.5)])
def test_bad_sparsity_is_refused(bad):
    with pytest.raises(ValueError):
        AttentionConfig(vocab_size=3, max_len=3, **bad)


@pytest.mark.parametrize(
    "bad",
    [
        dict(d_head=0), dict(d_head=-2), dict(d_head=2.5), dict(d_ff=0), dict(d_ff=-1),
        dict(layer_norm_eps=-1e-6), dict(layer_norm_eps=float("nan")), dict(bias="no"),
        dict(d_model=True), dict(top_k=True), dict(dropout="0.1"), dict(vocab_size=0),
    ],
)  # fmt: skip
def test_bad_sizes_and_options_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        AttentionConfig(**{"vocab_size": 3, "max_len": 3, "d_model": 4, **bad})


def test_numpy_integers_are_accepted_and_stored_as_int():
    import numpy as np

    cfg = AttentionConfig(
        vocab_size=np.int64(5), max_len=np.int32(4), d_model=np.int64(8), top_k=np.int64(2)
    )
    assert cfg.to_dict()["vocab_size"] == 5 and type(cfg.vocab_size) is int
    assert type(cfg.top_k) is int and type(cfg.d_head) is int
    assert AttentionConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("n_layers, window", [(2, 1), (1, 1), (1, None)])
def test_a_location_with_no_expert_left_mixes_nothing_and_spreads_no_nan(n_layers, window):
    from attnmoe import train_mlm
    from attnmoe.training import evaluate_mlm

    model = random_attention(
        3, vocab_size=6, max_len=5, d_model=4, n_layers=n_layers, window=window
    )
    x = torch.randint(0, 6, (8, 5), generator=torch.Generator().manual_seed(0))
    keys = torch.ones(8, 5, dtype=torch.bool)
    keys[:, 3:] = False  # with window=1, location 4 sees padding only
    keys[0] = False  # a sentence of padding only
    for form in (model, model.to_experts()):
        logits = form.logits(x, keys)
        assert torch.isfinite(logits).all()
    torch.testing.assert_close(
        model.logits(x, keys)[keys], model.to_experts().logits(x, keys)[keys]
    )
    assert math.isfinite(evaluate_mlm(model, x, keys))
    masking = "random" if n_layers > 1 else "all"
    history = train_mlm(model, x, key_mask=keys, epochs=2, masking=masking, verbose=0)
    assert all(math.isfinite(v) for v in history.train_loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("n_layers", [1, 2])
def test_bfloat16_converts_both_ways(n_layers):
    model = random_attention(5, vocab_size=6, max_len=5, d_model=8, n_heads=2, n_layers=n_layers)
    model = model.to(torch.bfloat16)
    x = torch.randint(0, 6, (4, 5), generator=torch.Generator().manual_seed(1))
    back = model.to_experts().to_attention()
    assert back.output.weight.dtype == torch.bfloat16
    reference = model.masked_log_probs(x).float()
    assert (back.masked_log_probs(x).float() - reference).abs().max() < 0.1  # bf16 rounding


@pytest.mark.parametrize("n_layers", [1, 2])
def test_a_context_bias_without_projection_biases_has_no_attention_form(n_layers):
    model = random_attention(
        5, vocab_size=6, max_len=5, d_model=8, n_heads=2, n_layers=n_layers, bias=False
    )
    experts = model.to_experts()
    experts.to_attention()  # as converted: no bias, fine
    layer = experts.word_layer if n_layers == 1 else experts.context_layers[0]
    with torch.no_grad():
        layer.context_bias.add_(0.5)  # e.g. learnt in the experts form
    with pytest.raises(ValueError, match="bias=False"):
        experts.to_attention()
