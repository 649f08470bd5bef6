"""explain() with numeric columns: fractional codes keep the shares exact, in both forms."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from attnmoe.explain import explain
from attnmoe.tabular import AttentionMoEClassifier

FAST = dict(epochs=15, batch_size=256, learning_rate=1e-2, n_ensembles=1, random_state=0)


def _table(n=240, seed=0):
    rng = np.random.default_rng(seed)
    income = rng.lognormal(3, 0.5, n).round(2)
    colour = rng.choice(["red", "green", "blue"], n)
    label = np.where((colour == "red") | (income > 25), "yes", "no")
    return pd.DataFrame({"income": income, "colour": colour, "age": rng.integers(18, 90, n)}), label


@pytest.fixture(scope="module", params=["pure", "bert"])
def numeric_model(request):
    torch.set_num_threads(1)
    X, y = _table()
    clf = AttentionMoEClassifier(block=request.param, n_heads=2, d_head=4, d_model=8, **FAST)
    clf.fit(X, y)
    # between knots, beyond both edges of the training range, and missing
    rows = pd.DataFrame(
        {
            "income": [float(np.median(X.income)) + 0.013, 1e6, -5.0, np.nan],
            "colour": ["red", "blue", "green", "red"],
            "age": [18.5, 200, 0, 45],
        }
    )
    return clf, rows


def _totals(frame, column):
    parts = frame[frame["kind"] != "gate"]
    return parts.groupby(["row", "member", "class_index"]).agg(
        total=(column, "sum"), logit=("logit", "first")
    )


def test_the_rows_have_fractional_codes(numeric_model):
    clf, rows = numeric_model
    assert [c.kind for c in clf.encoder_.columns_] == ["numeric", "categorical", "numeric"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the clipped and missing values
        tokens = clf.tokens(rows)
    assert tokens.dtype == torch.float64
    assert (tokens != tokens.floor()).any()
    # clipped to the first and last knots; missing is the mask token
    last = clf.encoder_.columns_[0].n_codes - 1
    assert tokens[1, 0] == last and tokens[2, 0] == 0 and tokens[3, 0] == clf.mask_id_


def test_attention_and_experts_forms_give_the_same_shares(numeric_model):
    clf, rows = numeric_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tokens = clf.tokens(rows)
    model = clf.models_[0]
    target = tokens.shape[1] - 1
    method = "linearization"
    from_attention = explain(model, tokens, i=target, classes=0, method=method)
    from_experts = explain(model.to_experts(), tokens, i=target, classes=0, method=method)
    for column in ("gate", "contribution", "approx_logit_contribution", "logit"):
        np.testing.assert_allclose(
            from_attention[column].to_numpy(dtype=float),
            from_experts[column].to_numpy(dtype=float),
            atol=1e-10,
            rtol=0,
        )
    # the logit in the frame is the attention form's own
    reference = model.masked_logits(tokens, positions=target)[:, 0, 0].detach()
    first = from_attention.groupby("row")["logit"].first().to_numpy()
    np.testing.assert_allclose(first, reference.numpy(), atol=1e-10, rtol=0)


def test_shares_add_up_as_documented(numeric_model):
    clf, rows = numeric_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        exact = explain(clf, rows, classes="all", method="linearization")
        proba = clf.predict_proba(rows)
    if clf.block == "pure":  # exact additive contributions
        totals = _totals(exact, "contribution")
        np.testing.assert_allclose(totals.total, totals.logit, atol=1e-9, rtol=0)
    else:  # the contributions to the pre-link context are exact; the logit's linearised
        assert exact.loc[exact.kind == "expert", "contribution"].isna().all()
    totals = _totals(exact, "approx_logit_contribution")
    np.testing.assert_allclose(totals.total, totals.logit, atol=1e-9, rtol=0)
    logits = totals["logit"].unstack("class_index").to_numpy()
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), proba, atol=1e-9)
    # each head's gate is a distribution over the columns
    gates = exact[exact.kind == "expert"].groupby(["row", "class_index", "head"])["gate"].sum()
    np.testing.assert_allclose(gates, 1.0, atol=1e-12)


def test_a_numeric_cell_shows_its_value(numeric_model):
    clf, rows = numeric_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frame = explain(clf, rows)
    income = frame[(frame.kind == "expert") & (frame.feature == "income")]
    shown = income.groupby("row")["value"].first()
    assert list(shown) == [str(v) for v in rows["income"]]  # the value, not a code or bin
