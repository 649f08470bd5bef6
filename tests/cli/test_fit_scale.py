"""``attnmoe fit`` flags for tables of real size: ``--max-steps``, ``--device``, ``--nproc``."""

from __future__ import annotations

import json
import socket

import numpy as np
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


def _fit_args(tmp_path, csv, out, *flags):
    fast = json.dumps({"batch_size": 16, "dropout": 0.0, "n_ensembles": 1})
    return ["fit", str(csv), "--target", "y", "--out", str(tmp_path / out), "--params", fast,
            *flags]  # fmt: skip


def test_checkpoints_and_resume_from_the_command_line(tmp_path, small_csv):
    whole = _fit_args(tmp_path, small_csv, "whole", "--checkpoint-dir", str(tmp_path / "a"))
    assert main([*whole, "--max-steps", "8"]) == 0
    part = _fit_args(tmp_path, small_csv, "part", "--checkpoint-dir", str(tmp_path / "b"))
    assert main([*part, "--max-steps", "4", "--checkpoint-every", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "step-000000002",
        "step-000000004",
    ]
    assert main([*part, "--max-steps", "8", "--resume"]) == 0
    a = AttentionMoEClassifier.from_pretrained(tmp_path / "whole")
    b = AttentionMoEClassifier.from_pretrained(tmp_path / "part")
    X = pd.DataFrame({"a": list("xy")})
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)
    assert b.resume is True and b.checkpoint_dir == str(tmp_path / "b")


def test_nproc_flag_sets_the_estimators_nproc(tmp_path, small_csv, monkeypatch):
    seen = {}

    def spy(self, X, y, X_unlabeled=None, sample_weight=None):
        seen.update(nproc=self.nproc, resume=self.resume, checkpoint_every=self.checkpoint_every)
        raise ValueError("stop here")

    monkeypatch.setattr(AttentionMoEClassifier, "fit", spy)
    assert main(_fit_args(tmp_path, small_csv, "m", "--nproc", "3")) != 0
    assert seen == {"nproc": 3, "resume": False, "checkpoint_every": 0}  # unset: defaults


def test_fit_under_torchrun_trains_as_a_rank_and_rank_0_saves(tmp_path, small_csv, monkeypatch):
    with socket.socket() as sock:  # what torchrun --nproc_per_node 1 sets
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**env, "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    seen = {}
    fit = AttentionMoEClassifier._fit_distributed

    def spy(self, *args):
        seen["histories"] = fit(self, *args)
        return seen["histories"]

    monkeypatch.setattr(AttentionMoEClassifier, "_fit_distributed", spy)
    assert main(_fit_args(tmp_path, small_csv, "m", "--max-steps", "3")) == 0
    assert seen["histories"][0].world_size == 1 and seen["histories"][0].steps == 3
    assert AttentionMoEClassifier.from_pretrained(tmp_path / "m").max_steps == 3
