"""The bias audit finds a planted gap and stays quiet when there is none."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from attnmoe.explain import audit, expected_calibration_error


def test_expected_calibration_error():
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, True, True, False])
    # bin 0.9: |1 - 0.95| * 2/4; bin 0.5: |0.5 - 0.55| * 2/4
    assert expected_calibration_error(conf, correct) == pytest.approx(0.05)


def test_planted_gap_is_flagged(simulation_model, simulation):
    X, y = simulation.X_test, simulation.y_test.to_numpy().copy()
    rng = np.random.default_rng(0)
    group = np.where(rng.random(len(X)) < 0.5, "A", "B")
    # plant: on most of group B the label is one the model did not predict
    b = group == "B"
    wrong = b & (rng.random(len(X)) < 0.8)
    y[wrong] = (simulation_model.predict(X[wrong]) + 1) % 4
    result = audit(simulation_model, X, y, group=group, n_bootstrap=100, random_state=0)
    acc = result.gaps.query("metric == 'accuracy'").set_index("group")
    assert acc.loc["B", "flagged"] and not acc.loc["A", "flagged"]
    assert acc.loc["B", "best_group"] == "A"
    assert acc.loc["B", "ci_low"] > 0.05
    direct = (simulation_model.predict(X[b]) == y[b]).mean()
    assert result.groups.loc["B", "accuracy"] == pytest.approx(direct)
    assert result.groups.loc["B", "error_rate"] == pytest.approx(1 - direct)
    assert result.any_flagged and "B" in set(result.flagged["group"])
    np.testing.assert_allclose(result.usage.sum(axis=1), 1.0, atol=1e-6)


def test_no_gap_no_flag_and_seeded(simulation_model, simulation):
    # the same rows under two names: every gap is zero, the intervals are resampling noise
    # (a random split of the rows is no good here: its chance gaps sit near the flag limit,
    # so whether it is flagged depends on the bootstrap stream)
    X = pd.concat([simulation.X_test] * 2, ignore_index=True)
    y = np.concatenate([simulation.y_test.to_numpy()] * 2)
    group = np.repeat(["A", "B"], len(simulation.X_test))
    first = audit(simulation_model, X, y, group=group, n_bootstrap=100, random_state=3)
    assert not first.any_flagged, first.flagged
    np.testing.assert_allclose(first.gaps["gap"], 0.0, atol=1e-12)
    assert (first.gaps["ci_high"] > first.gaps["ci_low"]).any()  # resampled, not degenerate
    again = audit(simulation_model, X, y, group=group, n_bootstrap=100, random_state=3)
    np.testing.assert_array_equal(first.gaps["ci_low"], again.gaps["ci_low"])
    other = audit(simulation_model, X, y, group=group, n_bootstrap=100, random_state=4)
    assert not np.array_equal(first.gaps["ci_low"], other.gaps["ci_low"])
    assert set(first.gaps["metric"]) == {  # error_rate is accuracy's gap: not again
        "accuracy",
        "false_negative_rate",
        "false_positive_rate",
        "ece",
        "expert_usage_tv",
    }


def test_intervals_are_scipys_stratified_percentile_bootstrap(simulation_model, simulation):
    """Rows resampled within each group: scipy's unpaired bootstrap, one sample per group."""
    X, y = simulation.X_test.iloc[:200], simulation.y_test.iloc[:200].to_numpy()
    group = np.repeat(["A", "B"], 100)
    result = audit(simulation_model, X, y, group=group, n_bootstrap=60, random_state=7)
    correct = simulation_model.predict(X) == y
    acc = result.gaps.query("metric == 'accuracy'").set_index("group")
    worse = acc["gap"].idxmax()
    best = acc.loc[worse, "best_group"]

    def gap(a, b):  # scipy's samples in group order: A's rows, then B's
        rows = {"A": a, "B": b}
        return correct[rows[best]].mean() - correct[rows[worse]].mean()

    expected = stats.bootstrap(
        (np.arange(100), np.arange(100, 200)),
        gap,
        n_resamples=60,
        paired=False,
        vectorized=False,
        method="percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert acc.loc[worse, "ci_low"] == pytest.approx(expected.low, abs=1e-12)
    assert acc.loc[worse, "ci_high"] == pytest.approx(expected.high, abs=1e-12)


def test_one_row_groups_and_undefined_resamples():
    """scipy refuses one-row samples (such a group resamples to itself, so it is held
    fixed), and draws where a metric is undefined are left out, not a NaN interval."""
    from attnmoe.explain.audit import _intervals

    members = {"a": np.array([0, 1]), "b": np.array([2])}

    def statistic(index):  # undefined when "a" is drawn as row 0 twice (1 in 4 draws)
        a = index["a"]
        return np.array([np.nan if (a == 0).all() else a.mean(), float(index["b"][0])])

    low, high = _intervals(statistic, members, n_bootstrap=200, confidence=0.9, seed=0)
    assert np.isfinite(low).all() and np.isfinite(high).all()
    assert (low[0], high[0]) == (0.5, 1.0)  # the defined draws: means 0.5 and 1
    assert (low[1], high[1]) == (2.0, 2.0)  # the fixed one-row group
    point = _intervals(
        lambda index: index["b"].astype(float), {"b": np.array([2])}, 5, confidence=0.9, seed=0
    )
    np.testing.assert_array_equal(point[0], point[1])  # nothing to resample


def test_audit_with_a_one_row_group(simulation_model, simulation):
    X, y = simulation.X_test.iloc[:41], simulation.y_test.iloc[:41]
    group = np.array(["A"] * 20 + ["B"] * 20 + ["C"])
    result = audit(simulation_model, X, y, group=group, n_bootstrap=20)
    c = result.gaps[result.gaps["group"] == "C"]
    assert len(c) == 5 and not c["flagged"].any()
    assert c[["ci_low", "ci_high"]].notna().all().all()


def test_group_column_that_is_not_a_feature(simulation_model, simulation):
    X = simulation.X_test.iloc[:200].assign(region=np.repeat(["n", "s"], 100))
    result = audit(
        simulation_model, X, simulation.y_test.iloc[:200], group="region", n_bootstrap=20
    )
    assert list(result.groups.index) == ["n", "s"]
    assert result.groups["n"].sum() == 200


def test_labels_read_as_floats_and_missing_labels(simulation_model, simulation):
    """A target column with a gap comes back as floats; its rows must still match."""
    X, y = simulation.X_test.iloc[:300], simulation.y_test.iloc[:300]
    group = np.repeat(["A", "B"], 150)
    typed = audit(simulation_model, X, y, group=group, n_bootstrap=10)
    as_float = audit(simulation_model, X, y.astype(float), group=group, n_bootstrap=10)
    np.testing.assert_allclose(typed.groups["accuracy"], as_float.groups["accuracy"])
    assert typed.groups["accuracy"].min() > 0.2  # the model has learnt something: not all -1

    gapped = y.astype(float).copy()
    gapped.iloc[:50] = np.nan  # 50 rows of group A have no label
    with pytest.warns(UserWarning, match="50 of 300 rows have no true label"):
        result = audit(simulation_model, X, gapped, group=group, n_bootstrap=10)
    assert result.groups.loc["A", "n"] == 100
    labelled = X.iloc[50:150]
    direct = (simulation_model.predict(labelled) == y.iloc[50:150].to_numpy()).mean()
    assert result.groups.loc["A", "accuracy"] == pytest.approx(direct)


def test_audit_input_errors(simulation_model, simulation):
    X, y = simulation.X_test.iloc[:100], simulation.y_test.iloc[:100]
    with pytest.raises(ValueError, match="'nosuch' is not a column of X"):
        audit(simulation_model, X, y, group="nosuch")
    with pytest.raises(ValueError, match="y has 99 labels for 100 rows"):
        audit(simulation_model, X, y.iloc[:99], group=np.repeat(["A"], 100))
    with pytest.raises(ValueError, match="all missing"):
        audit(simulation_model, X, np.full(100, np.nan), group=np.repeat(["A"], 100))


def test_binary_rates_are_the_positive_class_and_bootstrap_is_checked():
    from attnmoe.explain.audit import _metrics

    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    pred = np.array([0, 1, 1, 1, 1, 1, 0, 1])
    rates = _metrics(y, pred, np.full(8, 0.9), n_classes=2)
    assert rates["false_negative_rate"] == pytest.approx(1 / 5)  # positives predicted 0
    assert rates["false_positive_rate"] == pytest.approx(2 / 3)  # negatives predicted 1
    three = _metrics(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), np.full(4, 0.9), 3)
    assert three["false_negative_rate"] == pytest.approx(1 - (1 + 0 + 0.5) / 3)  # macro


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_audit_refuses_bad_bootstrap_counts(simulation_model, simulation, bad):
    X, y = simulation.X_test.iloc[:40], simulation.y_test.iloc[:40]
    with pytest.raises(ValueError, match="n_bootstrap must be an integer >= 1"):
        audit(simulation_model, X, y, group=np.repeat(["A", "B"], 20), n_bootstrap=bad)
