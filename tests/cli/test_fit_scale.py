"""``attnmoe fit`` flags for tables of real size: ``--max-steps``, ``--device``, ``--nproc``."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from attnmoe.cli import main
from attnmoe.tabular import AttentionMoEClassifier, AttentionMoEImputer


@pytest.fixture()
def small_csv(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": list("xyxy") * 10, "y": list("uvuv") * 10}).to_csv(path, index=False)
    return path


def test_max_steps_flag_sets_the_estimators_max_steps(tmp_path, small_csv):
    model = tmp_path / "m"
    argv = ["fit", str(small_csv), "--target", "y", "--out", str(model), "--max-steps", "3"]
    assert main(argv) == 0
    assert AttentionMoEClassifier.from_pretrained(model).max_steps == 3


def test_without_the_flag_the_default_cap_holds(tmp_path, small_csv):
    model = tmp_path / "m"
    fast = json.dumps({"epochs": 1})
    assert (
        main(["fit", str(small_csv), "--target", "y", "--out", str(model), "--params", fast]) == 0
    )
    assert (
        AttentionMoEClassifier.from_pretrained(model).max_steps
        == AttentionMoEClassifier().max_steps
    )


def test_impute_takes_max_steps_too(tmp_path, monkeypatch):
    path, out = tmp_path / "t.csv", tmp_path / "o.csv"
    pd.DataFrame({"a": ["x", "y", None, "y"] * 5, "b": list("uvuv") * 5}).to_csv(path, index=False)
    seen = {}
    fit = AttentionMoEImputer.fit

    def spy(self, X, y=None, sample_weight=None):
        seen["max_steps"] = self.max_steps
        return fit(self, X, y, sample_weight)

    monkeypatch.setattr(AttentionMoEImputer, "fit", spy)
    assert main(["impute", str(path), "--out", str(out), "--max-steps", "2"]) == 0
    assert seen == {"max_steps": 2}


def test_a_flag_and_params_for_the_same_knob_are_refused(tmp_path, small_csv, capsys):
    argv = ["fit", str(small_csv), "--target", "y", "--out", str(tmp_path / "m")]
    both = [*argv, "--max-steps", "3", "--params", json.dumps({"max_steps": 4})]
    assert main(both) != 0
    assert "give max_steps with --max-steps" in capsys.readouterr().err


def test_device_flag_sets_the_estimators_device(tmp_path, small_csv):
    model = tmp_path / "m"
    argv = ["fit", str(small_csv), "--target", "y", "--out", str(model), "--device", "cpu"]
    assert main([*argv, "--max-steps", "2"]) == 0
    assert AttentionMoEClassifier.from_pretrained(model).device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_device_cuda_without_a_gpu_is_one_error_line(tmp_path, small_csv, capsys):
    argv = ["fit", str(small_csv), "--target", "y", "--out", str(tmp_path / "m")]
    with pytest.raises(SystemExit):
        main([*argv, "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert "no cuda device" in err[-1]
