"""Speed: all L masked predictions of a sentence, one-pass vs masked copies vs Hugging Face.

For each sentence length ``L`` and the same random token batch, three ways to get
the ``L`` single-location masked predictions of every sentence:

(a) ``one_pass``: ``BidirectionalAttention.masked_logits(x, method="one_pass")``,
    one ``L x L`` pass per sentence (exact for one layer);
(b) ``copies``: ``masked_logits(x, method="copies")``, one masked copy of the
    sentence per location (``B * L`` copies);
(c) Hugging Face ``BertForMaskedLM`` with the equivalent one-layer configuration,
    fed the same ``B * L`` masked copies. Two variants are timed: ``hf`` is the
    plain ``hf(input_ids=copies).logits`` (the decoder runs at all ``L`` locations
    of every copy) and ``hf_gather`` runs ``hf.bert`` then the MLM head at the
    masked location only (the strongest fair HF baseline).

``--mode inference`` times the forward pass under ``torch.no_grad``; ``--mode
train`` times forward + backward of the MLM loss over all ``L`` locations.
Methods are interleaved within each repeat so machine noise hits all alike; the
median of the repeats is reported.

Run::

    .venv/bin/python benchmarks/bench_masking.py [--lengths 8 16 64] [--mode both]

Writes ``benchmarks/results/speed/masking.md`` and prints it. Needs ``transformers``
(the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from torch import Tensor
from transformers import BertConfig, BertForMaskedLM

from attnmoe import AttentionConfig, BidirectionalAttention
from attnmoe.bench.machine import machine_description
from attnmoe.model.functional import mask_locations
from attnmoe.training import mlm_loss

RESULTS = Path(__file__).resolve().parent / "results" / "speed" / "masking.md"
METHODS = ("one_pass", "copies", "hf", "hf_gather")
LABELS = {
    "one_pass": "(a) attnmoe one-pass",
    "copies": "(b) attnmoe masked copies",
    "hf": "(c) HF BertForMaskedLM, copies, `.logits`",
    "hf_gather": "(c') HF BertForMaskedLM, copies, head at mask only",
}


def build_models(args: argparse.Namespace, length: int) -> tuple[BidirectionalAttention, Tensor]:
    """Our one-layer bert-block model and HF's equivalent, both in eval mode."""
    ours = BidirectionalAttention(
        AttentionConfig(
            vocab_size=args.vocab,
            max_len=length,
            d_model=args.d_model,
            n_heads=args.heads,
            block="bert",
            d_ff=args.d_ff,
            activation="gelu",
            layer_norm_eps=1e-12,
        )
    ).eval()
    hf = BertForMaskedLM(
        BertConfig(
            vocab_size=args.vocab + 1,  # the mask token is id V, as in attnmoe
            hidden_size=args.d_model,
            num_hidden_layers=1,
            num_attention_heads=args.heads,
            intermediate_size=args.d_ff,
            hidden_act="gelu",
            max_position_embeddings=length,
            type_vocab_size=1,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            layer_norm_eps=1e-12,
        )
    ).eval()
    return ours, hf


def make_steps(
    ours: BidirectionalAttention, hf: BertForMaskedLM, x: Tensor, train: bool
) -> dict[str, Callable[[], Tensor]]:
    """One zero-argument callable per method; each returns the logits or the loss."""
    batch, length = x.shape
    mask_id = ours.config.mask_id
    positions = torch.arange(length).expand(batch, length)
    copies = mask_locations(x, positions, mask_id)  # (B*L, L), built once for HF
    rows = torch.arange(batch * length)
    where = positions.reshape(-1)  # masked location of each copy
    labels = torch.full_like(copies, -100)
    labels[rows, where] = x.reshape(-1)

    def hf_gather_logits() -> Tensor:
        hidden = hf.bert(input_ids=copies).last_hidden_state  # (B*L, L, d)
        return hf.cls(hidden[rows, where])  # (B*L, V+1)

    if not train:
        return {
            "one_pass": lambda: ours.masked_logits(x, method="one_pass"),
            "copies": lambda: ours.masked_logits(x, method="copies"),
            "hf": lambda: hf(input_ids=copies).logits[rows, where],
            "hf_gather": hf_gather_logits,
        }

    def backward(model: torch.nn.Module, loss: Tensor) -> Tensor:
        model.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach()

    return {
        "one_pass": lambda: backward(ours, mlm_loss(ours, x, method="one_pass")),
        "copies": lambda: backward(ours, mlm_loss(ours, x, method="copies")),
        "hf": lambda: backward(hf, hf(input_ids=copies, labels=labels).loss),
        "hf_gather": lambda: backward(hf, F.cross_entropy(hf_gather_logits(), x.reshape(-1))),
    }


def time_methods(
    steps: dict[str, Callable[[], Tensor]], repeats: int, warmup: int, train: bool
) -> dict[str, float]:
    """Median seconds per call of each step, interleaved (rotating order) per repeat."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    with torch.set_grad_enabled(train):
        for _ in range(warmup):
            for name in names:
                steps[name]()
        for r in range(repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                t0 = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def run(args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """Time every (mode, L); return table rows and correctness lines."""
    modes = ("inference", "train") if args.mode == "both" else (args.mode,)
    rows, checks = [], []
    for length in args.lengths:
        torch.manual_seed(args.seed)
        ours, hf = build_models(args, length)
        gen = torch.Generator().manual_seed(args.seed + length)
        x = torch.randint(0, args.vocab, (args.batch, length), generator=gen)
        with torch.no_grad():
            one = ours.masked_logits(x, method="one_pass")
            cop = ours.masked_logits(x, method="copies")
        checks.append(
            f"L = {length}: max |one-pass - copies| over the {one.numel()} logits = "
            f"{float((one - cop).abs().max()):.2e} (float32)"
        )
        for mode in modes:
            train = mode == "train"
            steps = make_steps(ours, hf, x, train)
            seconds = time_methods(steps, args.repeats, args.warmup, train)
            n_pred = args.batch * length
            rows.append({"mode": mode, "L": length, "n": n_pred, "seconds": seconds})
            print(
                f"{mode:9} L={length:3d} "
                + "  ".join(f"{m}={n_pred / s:,.0f}/s" for m, s in seconds.items()),
                flush=True,
            )
    return rows, checks


def render(args: argparse.Namespace, rows: list[dict], checks: list[str]) -> str:
    """The markdown report."""
    cmd = " ".join([".venv/bin/python", *map(shlex.quote, sys.argv)])
    hf_attn = build_models(args, 2)[1].config._attn_implementation  # what HF picked here
    lines = [
        "## Masked predictions per second: one-pass vs masked copies vs Hugging Face BERT",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {machine_description()}; torch threads {torch.get_num_threads()} (`--threads`).",
        "",
        f"Versions: Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__} (HF attention implementation: `{hf_attn}`).",
        "",
        "The machine was shared with other processes while this ran: read the ratios "
        "(all methods interleaved within each repeat, so load hits them alike), not the "
        "absolute rates.",
        "",
        f"Model (both libraries, one layer, float32, eval mode, no dropout): V = {args.vocab} "
        f"words + mask, d_model = {args.d_model}, {args.heads} heads, d_ff = {args.d_ff}, "
        "GELU, LayerNorm eps 1e-12. attnmoe: `BidirectionalAttention(AttentionConfig(..., "
        'block="bert"))`. HF: `BertForMaskedLM(BertConfig(num_hidden_layers=1, '
        "type_vocab_size=1, max_position_embeddings=L, ...))`; HF additionally has an "
        "embedding LayerNorm, token-type embeddings and the MLM head's transform "
        "(dense + GELU + LayerNorm), so it does slightly more work per token.",
        "",
        f"Data: the same {args.batch} random sentences of length L for every method; each "
        f"method produces all B * L = {args.batch} * L single-location masked predictions "
        f"(`inference`: logits under `torch.no_grad`; `train`: forward + backward of the MLM "
        f"loss over all L locations). Warm-up {args.warmup}, median of {args.repeats} "
        "interleaved repeats (`time.perf_counter`).",
        "",
        "Methods: " + "; ".join(f"{LABELS[m]}" for m in METHODS) + ". (c) gathers the masked "
        "location from `hf(input_ids=copies).logits` (the decoder runs at all L locations); "
        "(c') runs `hf.bert` then `hf.cls` at the masked location only. HF's copies and "
        "labels are built once, outside the timed region (this favours HF; (b) builds its "
        "copies inside `masked_logits`). HF predicts over V + 1 classes (the mask "
        "included), attnmoe over V.",
        "",
        "| mode | L | (a) one-pass /s | (b) copies /s | (c) HF /s | (c') HF gather /s "
        "| a / c | a / c' | a / b |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        s, n = row["seconds"], row["n"]
        rate = {m: n / s[m] for m in METHODS}
        lines.append(
            f"| {row['mode']} | {row['L']} | "
            + " | ".join(f"{rate[m]:,.0f}" for m in METHODS)
            + f" | **{s['hf'] / s['one_pass']:.1f}x** | {s['hf_gather'] / s['one_pass']:.1f}x"
            f" | {s['copies'] / s['one_pass']:.1f}x |"
        )
    goal = [r for r in rows if r["L"] == 16]
    lines += ["", "Goal (issue): one-pass >= 5x HF at L = 16."]
    for row in goal:
        s = row["seconds"]
        ratio, ratio_g = s["hf"] / s["one_pass"], s["hf_gather"] / s["one_pass"]
        met = (
            "met" if min(ratio, ratio_g) >= 5 else ("met vs (c) only" if ratio >= 5 else "NOT met")
        )
        lines.append(f"- {row['mode']}: {ratio:.1f}x vs (c), {ratio_g:.1f}x vs (c'): **{met}**.")
    lines += ["", "Correctness (same data, our model): " + "; ".join(checks) + "."]
    lines += ["", "Reading: " + reading(rows)]
    return "\n".join(lines) + "\n"


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f}x" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}x"


def reading(rows: list[dict]) -> str:
    """A one-paragraph interpretation generated from the measured ratios."""
    lengths = sorted({r["L"] for r in rows})
    vs_hf = [r["seconds"]["hf"] / r["seconds"]["one_pass"] for r in rows]
    vs_gather = [r["seconds"]["hf_gather"] / r["seconds"]["one_pass"] for r in rows]
    vs_copies = [r["seconds"]["copies"] / r["seconds"]["one_pass"] for r in rows]
    copies_vs_gather = [r["seconds"]["hf_gather"] / r["seconds"]["copies"] for r in rows]
    return (
        f"over L in {{{', '.join(map(str, lengths))}}} and both modes, one-pass is "
        f"{_span(vs_hf)} faster than HF's `.logits` on masked copies, {_span(vs_gather)} "
        f"faster than HF with the head applied at the mask only, and {_span(vs_copies)} "
        "faster than our own masked copies. Our copies path runs at "
        f"{_span(copies_vs_gather)} the speed of the HF gather variant, so the two "
        "implementations of the same L-copies algorithm are comparable and the gain "
        "comes from the algorithm: B * L copies process B * L^2 tokens through the "
        "projections and feed-forward and B * L^3 attention scores, while one pass "
        "processes B * L tokens (plus L mask rows shared by the batch) and B * L^2 "
        "scores, so the ratio grows roughly like L until the L x L attention and the "
        "output layer (the same B * L x V logits in every method except (c), which "
        "computes L times more) dominate. At small L the one-pass call is so short that "
        "fixed per-call costs (Python, operator dispatch) weigh on its rate, which is why "
        "its predictions/s rise with L and its advantage there is understated; larger "
        "batches amortise them. The one-pass result equals the copies to "
        "float32 rounding (correctness line above); it is exact only for one-layer "
        "models (docs/math.md, section 6)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--batch", type=int, default=32, help="sentences per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--mode", choices=["inference", "train", "both"], default="both")
    parser.add_argument("--vocab", type=int, default=1000, help="real words V")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows, checks = run(args)
    md = render(args, rows, checks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
