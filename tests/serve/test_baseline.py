"""The training baseline of the gates: computed at the end of fit, saved and loaded."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from attnmoe.explain.usage import target_gates
from attnmoe.model.io import ModelFileError
from attnmoe.tabular import AttentionMoEClassifier


def test_fit_stores_each_columns_mean_gate_over_the_training_rows(clf, table):
    frame, _ = table
    baseline = clf.gate_baseline_
    assert baseline["experts"] == ["colour", "size", "noise", "(target)"]
    assert baseline["n_rows"] == len(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gates = target_gates(clf, frame)  # (rows, members * heads, experts)
    assert baseline["overall"] == pytest.approx(gates.mean((0, 1)).tolist(), abs=1e-12)
    n_heads = clf.models_[0].config.n_heads
    per_head = gates.reshape(len(frame), len(clf.models_), n_heads, -1).mean((0, 1))
    assert np.allclose(baseline["heads"], per_head, atol=1e-12, rtol=0)
    assert sum(baseline["overall"]) == pytest.approx(1.0)


def test_the_baseline_round_trips_and_old_folders_load_without_it(clf, model_dir, tmp_path):
    # the conftest's model was fitted, saved and loaded: the loaded one has it, exactly
    saved = json.loads((model_dir / "classifier.json").read_text())["gate_baseline_"]
    assert [float(v) for v in saved["overall"]] == clf.gate_baseline_["overall"]
    clf.save_pretrained(tmp_path / "again")
    again = AttentionMoEClassifier.from_pretrained(tmp_path / "again")
    assert again.gate_baseline_ == clf.gate_baseline_

    old = tmp_path / "old"
    clf.save_pretrained(old)
    meta = json.loads((old / "classifier.json").read_text())
    del meta["gate_baseline_"]
    _rewrite(old, meta)
    assert not hasattr(AttentionMoEClassifier.from_pretrained(old), "gate_baseline_")

    meta["gate_baseline_"] = {**saved, "overall": saved["overall"][:2]}
    _rewrite(old, meta)
    with pytest.raises(ModelFileError, match=r"gate_baseline_\.overall"):
        AttentionMoEClassifier.from_pretrained(old)


def _rewrite(folder, meta) -> None:
    """``classifier.json`` replaced, and the manifest dropped (as a hand-edited folder)."""
    (folder / "classifier.json").write_text(json.dumps(meta))
    (folder / "manifest.json").unlink(missing_ok=True)
