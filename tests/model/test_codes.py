"""Continuous word codes: a fractional code interpolates between two words' inputs."""

import pytest
import torch

from attnmoe import CBOW, AttentionConfig, ContinuousWordExperts
from attnmoe.model.functional import check_codes, lookup_codes, mask_locations, split_codes

from .helpers import random_attention


def _codes(seed: int, batch: int, length: int, vocab_size: int) -> torch.Tensor:
    """Random codes with fractional, whole, last-word and mask cells (float64)."""
    generator = torch.Generator().manual_seed(seed)
    # fractional codes stay below vocab_size - 1: they never interpolate into the mask id
    x = torch.rand(batch, length, generator=generator, dtype=torch.float64) * (vocab_size - 1)
    x[0, 0] = vocab_size  # the mask token (a missing value)
    x[-1, -1] = vocab_size - 1  # the last word, whole
    x[0, -1] = 2.0  # a whole code in a float tensor
    return x


def _interpolated_input(model, x: torch.Tensor) -> torch.Tensor:
    """``(1 - t) E[lo] + t E[lo + 1] + P[j]``, written out."""
    lo = x.floor().long()
    t = (x - x.floor()).unsqueeze(-1)
    table = model.token_embedding.weight
    positions = model.position_embedding.weight[: x.shape[1]]
    return (1 - t) * table[lo] + t * table[(lo + 1).clamp_max(len(table) - 1)] + positions


def test_a_fractional_code_interpolates_the_word_embedding():
    model = random_attention(0, vocab_size=6, max_len=5, d_model=4)
    x = _codes(1, 3, 5, 6)
    torch.testing.assert_close(model.embed(x), _interpolated_input(model, x), atol=1e-14, rtol=0)


def test_integer_codes_take_the_plain_lookup_and_whole_floats_match_it_exactly():
    model = random_attention(1, vocab_size=6, max_len=5, d_model=4, n_heads=2)
    x = torch.randint(0, 7, (4, 5), generator=torch.Generator().manual_seed(2))
    lo, t = split_codes(x)
    assert lo is x and t is None
    assert split_codes(x.double())[1] is None  # whole codes only: no interpolation at all
    for form in (model, model.to_experts()):
        expected = form.masked_log_probs(x)
        assert torch.equal(form.masked_log_probs(x.double()), expected)
        assert torch.equal(form.masked_log_probs(x.float()), expected)


def test_lookup_codes_weights_the_two_neighbouring_rows():
    table = torch.arange(12.0, dtype=torch.float64).view(6, 2)
    x = torch.tensor([[0.25, 3.0, 4.5]], dtype=torch.float64)
    rows = lookup_codes(lambda ids: table[ids], x)
    expected = torch.tensor([[[0.5, 1.5], [6.0, 7.0], [9.0, 10.0]]], dtype=torch.float64)
    torch.testing.assert_close(rows, expected, atol=0, rtol=0)


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("block", ["pure", "bert"])
@pytest.mark.parametrize("top_k", [None, 2])
def test_forms_agree_on_fractional_codes(n_layers, block, top_k):
    model = random_attention(
        3, vocab_size=7, max_len=6, d_model=6, n_heads=2, n_layers=n_layers, block=block,
        top_k=top_k,
    )  # fmt: skip
    x = _codes(4, 3, 6, 7)
    reference = model.masked_log_probs(x, method="copies")
    experts = model.to_experts()
    assert isinstance(experts, ContinuousWordExperts)
    torch.testing.assert_close(experts.masked_log_probs(x, method="copies"), reference,
                               atol=1e-10, rtol=0)  # fmt: skip
    back = experts.to_attention()
    torch.testing.assert_close(back.masked_log_probs(x, method="copies"), reference,
                               atol=1e-9, rtol=0)  # fmt: skip
    if n_layers == 1:
        for form in (model, experts, back):
            one_pass = form.masked_log_probs(x, method="one_pass")
            torch.testing.assert_close(one_pass, reference, atol=1e-9, rtol=0)
    masked = x.clone()
    masked[:, 2] = model.config.mask_id
    for ours, theirs in zip(
        experts.gate_matrices(x, 2), model.attention_weights(masked), strict=True
    ):
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


def test_a_fractional_code_is_an_embedding_between_two_words():
    # the prediction with a code between words equals that of a model whose word
    # lo holds the interpolated embedding: the code is a point on the segment
    model = random_attention(5, vocab_size=6, max_len=4, d_model=4, n_heads=2)
    x = torch.tensor([[1.0, 2.25, 0.0, 4.0]], dtype=torch.float64)
    moved = random_attention(5, vocab_size=6, max_len=4, d_model=4, n_heads=2)
    with torch.no_grad():
        e = moved.token_embedding.weight
        e[2] = 0.75 * e[2] + 0.25 * e[3]
    whole = x.floor().long()
    for form, moved_form in ((model, moved), (model.to_experts(), moved.to_experts())):
        torch.testing.assert_close(
            form.masked_log_probs(x, positions=[0, 3]),
            moved_form.masked_log_probs(whole, positions=[0, 3]),
            atol=1e-12, rtol=0,
        )  # fmt: skip


def test_pure_effective_experts_and_contributions_hold_with_fractional_codes():
    model = random_attention(6, vocab_size=6, max_len=5, d_model=4, n_heads=2, n_layers=2,
                             std=0.4)  # fmt: skip
    experts = model.to_experts()
    x = _codes(7, 3, 5, 6)
    i = 1
    alpha, constant = experts.effective_experts(x, i)
    hidden = torch.einsum("bpl,bpld->bd", experts.effective_gates(x, i), alpha) + constant
    masked = x.clone()
    masked[:, i] = model.config.mask_id
    torch.testing.assert_close(hidden, model.hidden_states(masked)[:, i], atol=1e-10, rtol=0)
    shares = experts.contributions(x, i).sum((1, 2)) + constant
    torch.testing.assert_close(shares, hidden, atol=1e-10, rtol=0)


def test_cbow_interpolates_its_context_vectors():
    torch.manual_seed(0)
    model = CBOW(AttentionConfig(vocab_size=5, max_len=3, d_model=4)).double()
    x = torch.tensor([[0.5, 3.0, 5.0]], dtype=torch.float64)
    vectors = model.context_vectors.weight
    expected = (0.5 * vectors[0] + 0.5 * vectors[1] + vectors[5]) / 2  # location 1's context
    torch.testing.assert_close(model.hidden_states(x)[0, 1], expected, atol=1e-14, rtol=0)


def test_masking_a_float_codes_matrix_writes_the_exact_mask_id():
    x = torch.tensor([[0.5, 1.25, 2.0]], dtype=torch.float64)
    copies = mask_locations(x, torch.tensor([[1, 2]]), mask_id=5)
    assert copies.dtype == torch.float64
    assert copies.tolist() == [[0.5, 5.0, 2.0], [0.5, 1.25, 5.0]]


@pytest.mark.parametrize(
    "bad, message",
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (-0.5, r"lie in \[0, 6\]"),
        (6.5, r"lie in \[0, 6\]"),
        (5.5, "interpolate into the mask id"),
        (5.0000001, "interpolate into the mask id"),
    ],
)
def test_codes_outside_the_convention_are_refused(bad, message):
    model = random_attention(8, vocab_size=6, max_len=4, d_model=4)
    x = torch.tensor([[0.0, 1.5, 2.0, 3.0]], dtype=torch.float64)
    x[0, 2] = bad
    with pytest.raises(ValueError, match=message):
        model.masked_log_probs(x)
    with pytest.raises(ValueError, match=message):
        check_codes(x, 6)


def test_codes_at_the_edges_are_accepted_and_half_precision_is_not():
    model = random_attention(9, vocab_size=6, max_len=4, d_model=4)
    edges = torch.tensor([[0.0, 4.999, 5.0, 6.0]], dtype=torch.float64)  # last word, mask
    assert torch.isfinite(model.masked_log_probs(edges)).all()
    with pytest.raises(TypeError, match="float32/64"):
        model.masked_log_probs(edges.half())


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("top_k", [None, 3])
@pytest.mark.parametrize("block", ["pure", "bert"])
def test_compare_forms_holds_on_fractional_codes(n_layers, top_k, block):
    from attnmoe.model.equivalence import compare_forms

    model = random_attention(10, vocab_size=9, max_len=6, d_model=6, n_heads=3, d_head=2,
                             n_layers=n_layers, block=block, top_k=top_k)  # fmt: skip
    case = compare_forms(model, _codes(11, 4, 6, 9))
    assert case.worst < 1e-9
    assert (case.one_pass_vs_copies is not None) == (n_layers == 1)
