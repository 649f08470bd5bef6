"""train-text: training, early stopping, atomic output, the attnmoe embedding source, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attnmoe.cli import main as cli_main
from attnmoe.model import CBOW, BidirectionalAttention, load_model
from attnmoe.text.embeddings import from_attnmoe, load_source
from attnmoe.text.train import train_text
from attnmoe.text.vocab import Vocabulary


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small corpus with structure: 'kingN queenN' pairs in fixed templates."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(150):
        k = rng.integers(0, 6)
        lines.append(f"the king{k} and the queen{k} rule land{k} with care and wisdom today .")
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("runs") / "model"
    res = train_text(
        corpus,
        out,
        length=8,
        n_heads=2,
        d_model=16,
        epochs=3,
        min_count=2,
        also_cbow=True,
        patience=1,
        verbose=0,
    )
    return out, res


def test_outputs_are_saved_and_load(trained):
    out, res = trained
    assert sorted(p.name for p in out.iterdir()) == [
        "attention",
        "cbow",
        "training.json",
        "vocab.json",
    ]
    assert not list(out.parent.glob(".model.tmp-*"))  # the staging folder was renamed away
    vocab = Vocabulary.load(out / "vocab.json")
    assert vocab == res.vocab and vocab.words[0] == "<unk>"
    attn, cbow = load_model(out / "attention"), load_model(out / "cbow")
    assert isinstance(attn, BidirectionalAttention) and isinstance(cbow, CBOW)
    assert attn.config.vocab_size == len(vocab) and attn.config.max_len == 8
    torch.testing.assert_close(attn.output.weight, res.attention.output.weight)
    log = json.loads((out / "training.json").read_text())
    assert log["settings"]["length"] == 8
    assert log["settings"]["n_heads"] == 2 and log["settings"]["n_layers"] == 1  # the knobs' names
    assert log["data"]["train_examples"] > log["data"]["validation_examples"] > 0
    for name in ("attention", "cbow"):
        h = log["models"][name]
        assert len(h["validation_loss"]) == h["epochs_run"]
        assert h["held_out_loss"] == pytest.approx(min(h["validation_loss"]), rel=1e-5)
        assert h["train_loss"][-1] < h["train_loss"][0]  # it learns


def test_rewriting_the_output_replaces_it_atomically(corpus: Path, tmp_path: Path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "vocab.json").write_text("{}")  # an earlier output
    (out / "stale.txt").write_text("old")
    train_text(corpus, out, length=8, d_model=8, n_heads=1, epochs=1, patience=None, verbose=0)
    assert not (out / "stale.txt").exists() and (out / "attention" / "config.json").is_file()
    # a folder that is not an earlier output is refused before training, and left alone
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds no vocab\.json"):
        train_text(corpus, project, length=8, d_model=8, n_heads=1, epochs=1, verbose=0)
    assert [p.name for p in project.iterdir()] == ["notes.txt"]


def test_attnmoe_embedding_source(trained):
    out, res = trained
    vocab = res.vocab
    e = load_source(f"attnmoe:{out}")
    assert e.name == "attnmoe-E" and "<unk>" not in e and len(e) == len(vocab) - 1
    torch.testing.assert_close(
        torch.from_numpy(e.vectors), res.attention.token_embedding.weight[1 : len(vocab)]
    )
    rho = load_source(f"attnmoe:{out}@rho")
    np.testing.assert_allclose(rho.vectors, res.attention.output.weight[1:].detach().numpy())
    # experts at location j, summed over heads: W_O (W_V (E[w] + P[j]) + b_V)
    j = 3
    ex = load_source(f"attnmoe:{out}@experts:{j}")
    assert ex.name == f"attnmoe-experts{j}"
    layer = res.attention.layers[0].attention
    with torch.no_grad():
        h = (
            res.attention.token_embedding.weight[1 : len(vocab)]
            + res.attention.position_embedding.weight[j]
        )
        want = layer.out(layer.value(h)) - layer.out.bias
    np.testing.assert_allclose(ex.vectors, want.numpy(), atol=1e-5)
    cbow = from_attnmoe(out / "cbow", "E")
    assert cbow.name == "cbow-alpha"
    named = load_source(f"mine=attnmoe:{out / 'cbow'}@rho")
    assert named.name == "mine" and named.dim == 16
    with pytest.raises(ValueError, match="unknown part"):
        from_attnmoe(out, "nope")


def test_analogy_command_accepts_an_attnmoe_source(trained, tmp_path: Path, capsys):
    out, _ = trained
    questions = tmp_path / "q.txt"
    questions.write_text(": family\nking0 queen0 king1 queen1\nking1 queen1 king2 queen2\n")
    rc = cli_main(
        [
            *["analogy", f"attnmoe:{out}", f"attnmoe:{out}/cbow@rho"],
            *["--questions", str(questions), "--out", str(tmp_path / "a"), "--no-progress"],
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "attnmoe-E" in text and "cbow-rho" in text and "all (2)" in text


def test_cli_train_text(corpus: Path, tmp_path: Path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(
        [
            *["train-text", str(corpus), "--out", str(out), "--length", "8", "--d-model", "8"],
            *["--n-heads", "1", "--epochs", "1", "--min-count", "2", "--max-windows", "60"],
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "vocabulary:" in text and "stopped at --max-windows" in text and "saved:" in text
    assert (out / "vocab.json").is_file() and not (out / "cbow").exists()
    log = json.loads((out / "training.json").read_text())
    assert log["data"]["examples"] == 60


def test_two_layers_use_random_masking_and_sentences_mode(corpus: Path):
    res = train_text(
        corpus,
        None,
        length=8,
        n_layers=2,
        n_heads=1,
        d_model=8,
        epochs=1,
        mode="sentences",
        patience=None,
        verbose=0,
    )
    assert res.out is None and res.attention.config.n_layers == 2
    # random masking predicts ~15 % of locations, not all of them
    assert res.histories["attention"].masked_predictions == 0


def test_missing_corpus_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no corpus file"):
        train_text(tmp_path / "nope.txt", None, verbose=0)
    empty = tmp_path / "empty.txt"
    empty.write_text("one two\n")
    with pytest.raises(ValueError, match="no training examples"):
        train_text(empty, None, min_count=1, verbose=0)


def test_train_text_data_parallel_matches_one_process(tmp_path):
    """`--nproc 2` trains with DDP; the weights equal a one-process run of the same engine."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(f"w{i % 13} w{(i * 7) % 11}" for i in range(600)) + "\n")
    common = dict(length=8, d_model=8, n_heads=2, epochs=1, batch_size=16, min_count=1, seed=0)
    common |= dict(validation=0.0, patience=None, verbose=0)
    one = train_text(corpus, None, precision="fp32", checkpoint_dir=tmp_path / "c1", **common)
    two = train_text(corpus, None, nproc=2, **common)
    assert two.stats["models"]["attention"]["world_size"] == 2
    # the ranks read their shards from a memory-mapped file, removed afterwards
    streamed = Path(two.stats["data"]["train_file"])
    assert streamed.suffix == ".npy" and not streamed.exists()
    # key.bias has an exactly-zero true gradient (it cancels in the softmax): Adam turns
    # rounding noise into steps there, so it is compared in tests/model/test_distributed.py
    # in float64 instead.
    for (name, a), b in zip(
        one.attention.named_parameters(), two.attention.parameters(), strict=True
    ):
        if "key.bias" not in name:
            assert (a - b).abs().max() <= 1e-5, name


def test_train_text_bind_cores_and_polling_reach_the_trainer(tmp_path, monkeypatch):
    from attnmoe.training import distributed

    calls: list[dict] = []
    real = distributed.train_mlm_distributed

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **{**kwargs, "bind_cores": False})  # the wiring, not the OS

    monkeypatch.setattr("attnmoe.text.train.train_mlm_distributed", recording)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(f"w{i % 13} w{(i * 7) % 11}" for i in range(300)) + "\n")
    cli_main(
        [
            "train-text", str(corpus), "--out", str(tmp_path / "out"), "--length", "8",
            "--d-model", "8", "--n-heads", "2", "--epochs", "1", "--min-count", "1",
            "--validation", "0", "--bind-cores", "--poll-allreduce", "--quiet",
        ]
    )  # fmt: skip
    assert [(c["bind_cores"], c["poll_allreduce"]) for c in calls] == [(True, True)]
    assert load_model(tmp_path / "out" / "attention").config.max_len == 8


def test_a_vocabulary_of_unk_only_is_refused(corpus: Path, tmp_path: Path):
    with pytest.raises(ValueError, match=r"min_count=100000 keeps no word .* lower --min-count"):
        train_text(corpus, tmp_path / "out", min_count=100_000, epochs=1, verbose=0)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", [{"n_heads": 0}, {"window": -3}])
def test_a_bad_option_leaves_no_streamed_windows_behind(corpus: Path, tmp_path: Path, bad):
    checkpoints = tmp_path / "ck"
    with pytest.raises(ValueError):
        train_text(
            corpus, tmp_path / "out", length=8, d_model=16, min_count=1, epochs=1, verbose=0,
            checkpoint_dir=checkpoints, **bad,
        )  # fmt: skip
    leftovers = list(tmp_path.rglob(".attnmoe-train-windows-*"))
    assert leftovers == []
