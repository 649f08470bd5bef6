"""``attnmoe analogy`` (``train-text`` runs in tests/text/test_train_text.py)."""

from __future__ import annotations

import argparse

from attnmoe.cli import main
from attnmoe.cli import text as text_cli
from attnmoe.text.embeddings import glove_6b_50d


def test_cli(tmp_path, capsys):
    src = glove_6b_50d(limit=3000).to_keyed_vectors()
    src.save_word2vec_format(str(tmp_path / "g.txt"), write_header=False)
    # main() turns errors into an exit status: check it, as the exception did before
    argv = [f"small=glove:{tmp_path / 'g.txt'}", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(["analogy", *argv]) == 0
    out = capsys.readouterr().out
    assert "Table 1" in out and "| all (" in out and "small" in out
    assert (tmp_path / "o" / "table2_cosine.csv").exists()


def test_register_subcommand(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="attnmoe")
    text_cli.register(parser.add_subparsers(dest="command"))
    src = glove_6b_50d(limit=2000).to_keyed_vectors()
    src.save_word2vec_format(str(tmp_path / "g.txt"))
    args = parser.parse_args(
        ["analogy", f"w2v:{tmp_path / 'g.txt'}", "--out", str(tmp_path / "o"), "--no-progress"]
    )
    assert args.func(args) == 0
    assert "Table 2" in capsys.readouterr().out
