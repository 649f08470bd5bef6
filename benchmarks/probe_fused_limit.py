"""Time per optimizer step of the fused engine's two paths and of the torch engine
over table sizes (columns x distinct values per column).

The paper's model (one BERT block, 5 heads of 4, d = 20, batches of 128 masked copies)
on random tables of 2,000 rows, one thread. Each engine trains a few steps after a
warm-up (numba's compilation is cached). The fused engine is timed on each path
(:func:`attnmoe.training.fused.fused_path` forced): "tables" and "tokens"; the new
fused engine takes the path the rule chooses. "Old fused" is the engine before the
tokens path: the tables path with its BLAS calls on OpenBLAS's default threads (it
refused tables past 2,048 (location, word) pairs and 65,536 gate-table entries; timed
here anyway). Prints a
Markdown table and writes it to ``--out``
(``benchmarks/results/table_scale/fused_limit.md``)::

    nice python benchmarks/probe_fused_limit.py
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from pathlib import Path

import numpy as np
import torch

from attnmoe import AttentionConfig, BidirectionalAttention
from attnmoe.training import train_mlm
from attnmoe.training.fused import engine as fused_engine

RULE = fused_engine.fused_path
ONE_BLAS_THREAD = fused_engine._one_blas_thread
OUT = Path(__file__).resolve().parent / "results" / "table_scale" / "fused_limit.md"
COLUMNS = (5, 10, 22, 32, 64)
VALUES = (2, 10, 46, 128, 256)
MAX_BYTES = 1.5e9  # the fused engine's float32 tables beyond this are not tried here


def tokens(n_rows: int, n_columns: int, n_values: int, seed: int = 0) -> np.ndarray:
    """Random rows as the estimators encode them: every column's codes ``0 ..
    n_values - 1`` (the location tells the columns apart), then a target of 3 classes."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, n_values, (n_rows, n_columns))
    target = rng.integers(0, 3, (n_rows, 1))
    return np.hstack([cells, target]).astype(np.int64)


def model(vocab: int, length: int) -> BidirectionalAttention:
    torch.manual_seed(0)
    cfg = AttentionConfig(
        vocab_size=vocab, max_len=length, d_model=20, n_heads=5, d_head=4, d_ff=5,
        n_layers=1, block="bert", dropout=0.1, layer_norm_eps=1e-6,
    )  # fmt: skip
    return BidirectionalAttention(cfg)


def fused_bytes(length: int, vocab: int) -> float:
    """The fused engine's largest tables (scores and their exponentials), float32."""
    return 4.0 * length * length * (vocab + 1) * (5 + 20)


def forced_path(path: str | None, old: bool = False) -> None:
    """Make the fused engine take ``path`` (None: the rule's choice); ``old``: with its
    BLAS calls on OpenBLAS's default threads, as before."""
    fused_engine.fused_path = RULE if path is None else (lambda model, length=None: path)
    fused_engine._one_blas_thread = contextlib.nullcontext if old else ONE_BLAS_THREAD


def seconds_per_step(engine: str, data: np.ndarray, vocab: int, steps: int) -> float:
    """Seconds per optimizer step: a run of ``1 + steps`` steps less a run of one (the
    setup), each the fastest of three (the machine is shared). Fast steps are timed over
    more of them, so that the difference lasts at least 0.3 s."""
    estimate = _difference(engine, data, vocab, steps, repeats=1)
    if estimate * steps < 0.3:
        steps = min(2000, max(steps, round(0.3 / max(estimate, 1e-4))))
    return _difference(engine, data, vocab, steps, repeats=3)


def _difference(engine: str, data: np.ndarray, vocab: int, steps: int, repeats: int) -> float:
    times = {1: math.inf, 1 + steps: math.inf}
    for _ in range(repeats):
        for n in times:
            m = model(vocab, data.shape[1])
            start = time.perf_counter()
            train_mlm(
                m, data, epochs=10**6, max_steps=n, batch_size=128, masking="copies",
                engine=engine, verbose=0, num_threads=1,
            )  # fmt: skip
            times[n] = min(times[n], time.perf_counter() - start)
    return (times[1 + steps] - times[1]) / steps


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--columns", type=int, nargs="+", default=list(COLUMNS))
    parser.add_argument("--values", type=int, nargs="+", default=list(VALUES))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _difference("torch", tokens(300, 2, 3), 9, 2, repeats=1)  # imports and first calls
    lines = [
        "| columns | values | pairs L·(V+1) | table L·h·L·(V+1) | old fused ms/step "
        "| tables path ms/step | tokens path ms/step | new fused: path | new fused ms/step "
        "| torch ms/step | torch / new fused |",
        "|---:|---:|---:|---:|---:|---:|---:|:---|---:|---:|---:|",
    ]
    print(lines[0], flush=True)
    for n_columns in args.columns:
        for n_values in args.values:
            data = tokens(2000, n_columns, n_values)
            vocab, length = max(n_values, 3), n_columns + 1
            table = length * 5 * length * (vocab + 1)
            torch_s = seconds_per_step("torch", data, vocab, args.steps)
            times = {"old": float("nan"), "tables": float("nan")}
            for name, path in (("old", "tables"), ("tables", "tables"), ("tokens", "tokens")):
                if path == "tables" and fused_bytes(length, vocab) > MAX_BYTES:
                    continue
                forced_path(path, old=name == "old")
                seconds_per_step("fused", data, vocab, 1)  # compile / warm up
                times[name] = seconds_per_step("fused", data, vocab, args.steps)
            forced_path(None)
            chosen = RULE(model(vocab, length), length)
            new_s = times[chosen]
            line = (
                f"| {n_columns} | {n_values} | {length * (vocab + 1):,} | {table:,} | "
                f"{_ms(times['old'])} | {_ms(times['tables'])} | {_ms(times['tokens'])} | "
                f"{chosen} | {_ms(new_s)} | "
                f"{_ms(torch_s)} | {torch_s / new_s:.1f} |"
            )
            lines.append(line)
            print(line, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
