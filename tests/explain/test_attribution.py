"""explain(): gate weights and each expert's additive share of the logit."""

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe import AttentionConfig, ContinuousWordExperts
from attnmoe.explain import explain, top_experts
from attnmoe.model.equivalence import random_attention_model


def _model(block, heads, layers, seed=0, **extra):
    config = AttentionConfig(
        vocab_size=7, max_len=5, d_model=6, n_heads=heads, n_layers=layers, block=block, **extra
    )
    return random_attention_model(config, seed=seed)


def _totals(frame, column):
    parts = frame[frame["kind"] != "gate"]
    return parts.groupby(["row", "member", "class_index"]).agg(
        total=(column, "sum"), logit=("logit", "first")
    )


@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_pure_contributions_add_up_to_the_logit(heads, layers):
    model = _model("pure", heads, layers, seed=heads + layers)
    x = torch.randint(0, 7, (4, 5), generator=torch.Generator().manual_seed(1))
    frame = explain(model, x, i=2)
    totals = _totals(frame, "contribution")
    np.testing.assert_allclose(totals.total, totals.logit, atol=1e-6, rtol=0)
    # the logit in the frame is the model's own
    reference = model.masked_logits(x, positions=2)[:, 0].detach()
    chosen = reference.argmax(-1)  # predicted class by default
    np.testing.assert_allclose(totals.logit, reference.gather(1, chosen[:, None])[:, 0], atol=1e-9)
    experts = frame[frame["kind"] == "expert"]
    assert len(experts) == 4 * heads**layers * 5
    # each head (path) gate is a distribution over the locations
    sums = experts.groupby(["row", "head", "path"])["gate"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)
    assert (frame["kind"] == "gate").any() == (layers > 1)


def test_free_experts_model_and_given_classes():
    torch.manual_seed(0)
    model = ContinuousWordExperts(AttentionConfig(vocab_size=5, max_len=4, n_heads=2)).double()
    x = torch.tensor([[0, 1, 2, 3], [4, 4, 0, 1]])
    frame = explain(model, x, i=1, classes=[3, 0])
    assert sorted(frame["class_index"].unique()) == [0, 3]
    totals = _totals(frame, "contribution")
    logits = model.masked_logits(x, positions=1)[:, 0].detach()
    np.testing.assert_allclose(totals.total.to_numpy(), [logits[0, 3], logits[1, 0]], atol=1e-9)


@pytest.mark.parametrize("layers", [1, 2])
def test_bert_context_contributions_are_exact(layers):
    model = _model("bert", 2, layers, seed=5)
    experts = model.to_experts()
    x = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(2))
    i = 3
    context = experts.contributions(x, i).sum((1, 2))
    if layers == 1:
        bias = experts.word_layer.context_bias
        residual = experts.word_layer.residual[i, model.config.mask_id].expand(3, -1)
        link = experts.word_layer.output
    else:
        h, _ = experts.word_layer(experts.masked_copy(x, i))
        last = experts.context_layers[-1]
        bias, residual, link = last.context_bias, h[:, i], last.output
    logits = experts.output(link(residual, context + bias))
    np.testing.assert_allclose(
        logits.detach(), model.masked_logits(x, positions=i)[:, 0].detach(), atol=1e-9
    )


@pytest.mark.parametrize("layers", [1, 2])
def test_bert_approximate_shares(layers):
    model = _model("bert", 2, layers, seed=7)
    x = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(3))
    frame = explain(model, x, i=1, n_steps=64)
    assert frame.loc[frame.kind == "expert", "contribution"].isna().all()  # not exact: not given
    totals = _totals(frame, "approx_logit_contribution")
    np.testing.assert_allclose(totals.total, totals.logit, atol=5e-3)  # quadrature error only
    linear = _totals(explain(model, x, i=1, method="linearization"), "approx_logit_contribution")
    np.testing.assert_allclose(linear.total, linear.logit, atol=1e-9)
    with pytest.raises(ValueError, match="method"):
        explain(model, x, i=1, method="shap")


def test_classifier_explanations_match_its_probabilities(pure_table_model):
    clf, frame, _ = pure_table_model
    rows = frame.iloc[:6]
    explained = explain(clf, rows, classes="all")
    assert set(explained["feature"].unique()) == {
        "colour",
        "size",
        "noise",
        "(target)",
        "(intercept)",
    }
    first = explained[(explained.row == 0) & (explained.kind == "expert")]
    assert first.loc[first.feature == "colour", "value"].iloc[0] == rows["colour"].iloc[0]
    totals = _totals(explained, "contribution")
    np.testing.assert_allclose(totals.total, totals.logit, atol=1e-6)
    logits = totals["logit"].unstack("class_index").to_numpy()
    proba = np.exp(logits - logits.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    np.testing.assert_allclose(proba, clf.predict_proba(rows), atol=1e-5)
    # default: the predicted class; a given label works too
    predicted = explain(clf, rows)
    assert list(predicted.groupby("row")["class"].first()) == list(clf.predict(rows))
    given = explain(clf, rows, classes="yes")
    assert set(given["class"]) == {"yes"}
    with pytest.raises(ValueError, match="unknown class"):
        explain(clf, rows, classes="maybe")


def test_top_experts_ranks_by_share(pure_table_model):
    clf, frame, _ = pure_table_model
    top = top_experts(explain(clf, frame.iloc[:4]), n=2)
    assert len(top) == 8
    assert (top.groupby("row")["share"].apply(lambda s: s.abs().is_monotonic_decreasing)).all()


def test_explain_refuses_what_it_cannot_explain(pure_table_model):
    from attnmoe.tabular import AttentionMoEClassifier

    with pytest.raises(ValueError, match="location i"):
        explain(_model("pure", 1, 1), torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(Exception, match="not fitted"):
        explain(AttentionMoEClassifier(), pd.DataFrame({"a": [1]}))
    with pytest.raises(TypeError):
        explain(object(), None)
