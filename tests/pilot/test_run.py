"""One run's measures: the effect on the new rows, the size on disk, the peak memory."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from attnmoe.bench.baselines import make_mixed_baseline
from attnmoe.explain import expected_calibration_error
from attnmoe.pilot import make_split
from attnmoe.pilot.run import _PeakMemory, effect, model_size
from attnmoe.tabular import AttentionMoEClassifier
from tests.pilot.conftest import small_table


def test_effect_equals_scikit_learn_and_the_audit_ece():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=50)
    classes = np.array(["a", "b", "c"])
    truth = pd.Series(rng.choice(classes, 50))
    got = effect(classes, proba, truth)
    predicted = classes[proba.argmax(1)]
    assert got["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert got["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert got["log_loss"] == pytest.approx(log_loss(truth, proba, labels=classes))
    assert got["ece"] == expected_calibration_error(proba.max(1), predicted == truth.to_numpy())


def test_a_class_never_seen_in_training_counts_as_probability_zero():
    got = effect(np.array(["a", "b"]), np.array([[0.9, 0.1], [0.5, 0.5]]), pd.Series(["a", "z"]))
    assert got["accuracy"] == 0.5
    assert got["log_loss"] == pytest.approx((-np.log(0.9) - np.log(1e-15)) / 2)


@pytest.fixture(scope="module")
def split():
    return make_split(small_table(), "label", split_by="region", train=["north"], drop=["day"])


def test_sizes_on_disk_in_each_library_s_format(split, tmp_path):
    clf = AttentionMoEClassifier(epochs=1, random_state=0).fit(split.X_train, split.y_train)
    size = model_size(clf, tmp_path / "kept")
    files = [p for p in (tmp_path / "kept").rglob("*") if p.is_file()]
    assert (
        size == sum(p.stat().st_size for p in files)
        and (tmp_path / "kept/classifier.json").is_file()
    )
    lr = make_mixed_baseline("logistic_regression").fit(split.X_train, split.y_train)
    joblib.dump(lr, tmp_path / "lr.joblib")
    assert model_size(lr) == (tmp_path / "lr.joblib").stat().st_size
    lgbm = make_mixed_baseline("lightgbm").fit(split.X_train, split.y_train)
    assert model_size(lgbm) == len(lgbm.booster_.model_to_string().encode())


def test_peak_memory_sees_what_a_block_allocates_at_its_highest():
    try:  # the high-water mark can be reset on Linux only (elsewhere: getrusage, no reset)
        open("/proc/self/clear_refs", "w").close()
    except OSError:
        pytest.skip("no /proc/self/clear_refs here")
    with _PeakMemory() as memory:
        block = np.ones(40 * 2**20 // 8)  # 40 MiB, touched
        del block
    assert memory.mb >= 35
    with _PeakMemory() as memory:
        pass
    assert memory.mb < 5
