"""ExpertUsageLog: streaming sums that match a direct computation in bounded memory."""

import json

import numpy as np
import pandas as pd
import pytest

from attnmoe.explain import ExpertUsageLog, target_gates


def test_target_gates_are_the_models_gates(simulation_model, simulation):
    X = simulation.X_test.iloc[:50]
    gates = target_gates(simulation_model, X)
    cfg = simulation_model.models_[0].config
    assert gates.shape == (50, cfg.n_heads, X.shape[1] + 1)
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-6)
    experts = simulation_model.models_[0].to_experts()
    tokens = simulation_model.tokens(X)
    reference = experts.gates(tokens, i=tokens.shape[1] - 1).detach().numpy()
    np.testing.assert_allclose(gates, reference, atol=1e-5)


def test_streaming_log_matches_direct_computation(simulation_model, simulation):
    X = simulation.X_test
    group = np.where(np.arange(len(X)) % 3 == 0, "a", "b")
    log = ExpertUsageLog.for_classifier(simulation_model)
    for first in range(0, len(X), 128):  # batches, as a service would log them
        log.log(simulation_model, X.iloc[first : first + 128], group=group[first : first + 128])
    assert log.n_rows == len(X)

    gates = target_gates(simulation_model, X)
    predicted = simulation_model.predict(X).astype(str)
    usage = gates.mean(1)
    overall = log.usage("overall").loc["all"].to_numpy()
    np.testing.assert_allclose(overall, usage.mean(0), atol=1e-12)
    by_class = log.usage("class")
    for label in np.unique(predicted):
        np.testing.assert_allclose(
            by_class.loc[label].to_numpy(), usage[predicted == label].mean(0), atol=1e-12
        )
    by_group = log.usage("group")
    np.testing.assert_allclose(by_group.loc["a"].to_numpy(), usage[group == "a"].mean(0))
    frame = log.to_frame()
    per_head = frame.query("scope == 'overall' and head == 0").mean_gate.to_numpy()
    np.testing.assert_allclose(per_head, gates[:, 0].mean(0), atol=1e-12)
    top = frame.query("scope == 'overall' and head == -1").top_share.to_numpy()
    np.testing.assert_allclose(top, np.bincount(usage.argmax(1), minlength=usage.shape[1]) / len(X))
    np.testing.assert_allclose(
        frame.query("head == -1").groupby(["scope", "key"]).mean_gate.sum(), 1
    )


def test_memory_does_not_grow_with_rows():
    rng = np.random.default_rng(0)
    log = ExpertUsageLog([f"c{j}" for j in range(6)], n_heads=4)
    sizes = []
    for _ in range(30):
        gates = rng.dirichlet(np.ones(6), size=(2000, 4))
        log.update(gates, predicted=rng.integers(0, 3, 2000), group=rng.choice(["x", "y"], 2000))
        sizes.append(log.state_nbytes())
    assert log.n_rows == 60_000
    assert len(set(sizes)) == 1  # fixed once every class and group has been seen
    assert sizes[0] < 10_000


def test_merge_equals_one_log_and_keys_are_capped():
    rng = np.random.default_rng(1)
    gates = rng.dirichlet(np.ones(3), size=(100, 2))
    pred = rng.integers(0, 2, 100)
    whole = ExpertUsageLog(["a", "b", "c"], n_heads=2)
    whole.update(gates, predicted=pred)
    left, right = ExpertUsageLog(["a", "b", "c"], 2), ExpertUsageLog(["a", "b", "c"], 2)
    left.update(gates[:40], predicted=pred[:40])
    right.update(gates[40:], predicted=pred[40:])
    pd.testing.assert_frame_equal(left.merge(right).to_frame(), whole.to_frame())
    capped = ExpertUsageLog(["a", "b", "c"], n_heads=2, max_keys=3)
    with pytest.warns(UserWarning, match="pooled"):
        capped.update(gates, group=np.arange(100))
    assert len(capped.usage("group")) == 4  # three groups and "(other)"
    with pytest.raises(ValueError, match="gates must be"):
        capped.update(gates[:, :1])


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_write_formats(tmp_path, suffix):
    log = ExpertUsageLog(["a", "b"], n_heads=1)
    log.update(np.array([[[0.9, 0.1]], [[0.3, 0.7]]]), predicted=["x", "y"], group=["g", "g"])
    path = log.write(tmp_path / f"usage.{suffix}")
    if suffix == "parquet":
        back = pd.read_parquet(path)
    elif suffix == "csv":
        back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    else:
        back = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    expected = log.to_frame()
    assert list(back.columns) == list(expected.columns)
    np.testing.assert_allclose(back["mean_gate"], expected["mean_gate"])
    assert set(back["scope"]) == {"overall", "class", "group"}
    with pytest.raises(ValueError, match="unknown format"):
        log.write(tmp_path / "usage.xlsx")


def test_missing_group_or_class_is_a_group_of_its_own():
    gates = np.random.default_rng(2).dirichlet(np.ones(3), size=(4, 1))
    log = ExpertUsageLog(["a", "b", "c"], n_heads=1)
    log.update(gates, predicted=["p", "q", np.nan, None], group=["g", np.nan, "g", None])
    frame = log.to_frame().query("head == -1 and expert == 0").set_index(["scope", "key"])
    assert frame.loc[("class", "(missing)"), "n_rows"] == 2
    assert frame.loc[("group", "(missing)"), "n_rows"] == 2
    assert "nan" not in set(frame.index.get_level_values("key"))
    np.testing.assert_allclose(
        log.usage("group").loc["(missing)"], gates[[1, 3], 0].mean(0), rtol=1e-12
    )
