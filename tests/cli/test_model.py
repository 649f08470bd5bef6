"""``attnmoe --help``, ``version``, ``convert``, ``check-equivalence``, run as a user runs them."""

import subprocess
import sys

import torch

from attnmoe import BidirectionalAttention, ContinuousWordExperts
from attnmoe.cli import main
from attnmoe.model.config import AttentionConfig
from attnmoe.model.equivalence import random_attention_model


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "attnmoe.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_and_version():
    result = run("--help")
    assert result.returncode == 0
    for command in ("version", "convert", "check-equivalence"):
        assert command in result.stdout
    result = run("version")
    assert result.returncode == 0 and result.stdout.startswith("attnmoe ")


def test_check_equivalence_passes_and_fails_on_tolerance(capsys):
    assert main(["check-equivalence", "--n-heads", "1", "2", "--n-layers", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "8/8 configurations within 1e-10" in out
    # an impossible tolerance must fail with a non-zero exit
    assert main(["check-equivalence", "--n-heads", "2", "--n-layers", "2", "--tol", "0"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_convert_both_ways(tmp_path, capsys):
    config = AttentionConfig(vocab_size=6, max_len=5, d_model=4, n_heads=2, block="bert")
    model = random_attention_model(config, seed=3)
    model.save_pretrained(tmp_path / "attention")
    assert main(["convert", str(tmp_path / "attention"), str(tmp_path / "experts"), "--check"]) == 0
    assert "BidirectionalAttention -> ContinuousWordExperts" in capsys.readouterr().out
    experts = ContinuousWordExperts.from_pretrained(tmp_path / "experts")
    assert main(["convert", str(tmp_path / "experts"), str(tmp_path / "back")]) == 0
    back = BidirectionalAttention.from_pretrained(tmp_path / "back")
    x = torch.randint(0, 6, (4, 5))
    reference = model.masked_log_probs(x)
    assert (experts.masked_log_probs(x) - reference).abs().max() < 1e-10
    assert (back.masked_log_probs(x) - reference).abs().max() < 1e-10


def test_convert_reports_bad_directory(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert "not a model directory" in capsys.readouterr().err


def test_convert_names_a_tabular_classifier_folder(tmp_path, capsys):
    from attnmoe.tabular import AttentionMoEClassifier

    X, y = torch.tensor([[0, 1], [1, 0], [0, 0], [1, 1]]).numpy(), [0, 1, 0, 1]
    AttentionMoEClassifier(epochs=1, random_state=0).fit(X, y).save_pretrained(tmp_path / "clf")
    assert main(["convert", str(tmp_path / "clf"), str(tmp_path / "out")]) == 2
    assert "holds a tabular classifier (attnmoe fit)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
