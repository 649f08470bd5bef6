"""Data-parallel MLM training: 2 processes x 1 thread vs 1 process x 1 thread, and memory.

Three measurements, each configuration in a fresh Python process (so its peak
RSS is its own):

1. Throughput: masked predictions per second of :func:`train_mlm_distributed`
   with ``nproc=1`` and with ``nproc=2`` (DDP over gloo), one torch thread per
   process, the same model, seed and global batch. The two are interleaved
   ``--repeats`` times so machine load hits both alike; medians are reported.
2. Bounded memory while training: 2 processes train on a synthetic corpus of
   ``--corpus-tokens`` (default 100M) tokens for ``--stream-steps`` steps; the
   resident memory of each rank is sampled every ``--log-every`` steps.
3. Bounded memory while streaming: one process reads the whole corpus through
   the sharded source (both ranks' shards of every global batch, an epoch's
   worth of windows), sampling RSS; no training.

With ``--bind-cores`` every throughput configuration also runs with each process
bound to its own core (``train_mlm_distributed(..., bind_cores=True)``; the two
independent half-batch processes of the ceiling pinned to one core each),
interleaved with the unbound ones. With ``--poll-allreduce`` the 2-process runs
are repeated with ``poll_allreduce=True`` (each rank polls the gradient
all-reduce instead of sleeping), against the same 1-process runs and ceiling.

Run::

    .venv/bin/python benchmarks/bench_ddp.py [--repeats 3] [--steps 60] [--bind-cores] \
        [--poll-allreduce]

Writes ``benchmarks/results/ddp/run1.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from attnmoe import AttentionConfig, BidirectionalAttention
from attnmoe.bench.machine import machine_description
from attnmoe.training.distributed import (
    SyntheticSource,
    global_batch_windows,
    shard_range,
    train_mlm_distributed,
)
from attnmoe.training.distributed.affinity import core_slice
from attnmoe.training.distributed.memory import rss_mib

RESULTS = Path(__file__).resolve().parent / "results" / "ddp" / "run1.md"


def _model(args: argparse.Namespace) -> BidirectionalAttention:
    torch.manual_seed(args.seed)
    cfg = AttentionConfig(
        vocab_size=args.vocab,
        max_len=args.window,
        d_model=args.d_model,
        n_heads=args.n_heads,
        block=args.block,
    )
    return BidirectionalAttention(cfg)


def _worker(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    if args.worker == "scan":
        source = SyntheticSource(args.corpus_tokens, args.window, args.vocab, seed=args.seed)
        global_batch = args.global_batch[0]
        n_batches = len(source) // global_batch
        samples, tokens = [[0, rss_mib()]], 0
        start = time.perf_counter()
        for step in range(n_batches):
            lo, _ = global_batch_windows(step, len(source), global_batch, seed=args.seed)
            for rank in range(2):
                a, b = shard_range(lo, global_batch, rank, 2)
                tokens += source.windows(a, b).numel()
            if (step + 1) % max(1, n_batches // 10) == 0:
                samples.append([step + 1, rss_mib()])
        return {
            "tokens": tokens,
            "seconds": time.perf_counter() - start,
            "rss": samples,
            "batches": n_batches,
        }
    if args.worker == "half" and args.bound:  # two of these run at once, each on its own cores
        os.sched_setaffinity(0, core_slice(args.half_index, 2, args.threads))
    nproc = 1 if args.worker in ("one", "half") else 2
    tokens = args.corpus_tokens if args.worker == "stream" else args.bench_tokens
    steps = args.stream_steps if args.worker == "stream" else args.steps
    # "half": one process on half the global batch, to run two at once with no communication
    batch = args.global_batch[0] // 2 if args.worker == "half" else args.global_batch[0]
    source = SyntheticSource(tokens, args.window, args.vocab, seed=args.seed)
    model = _model(args)
    history = train_mlm_distributed(
        model,
        source,
        global_batch=batch,
        steps=steps,
        lr=1e-3,
        seed=args.seed,
        nproc=nproc,
        num_threads=args.threads,
        log_every=args.log_every,
        bind_cores=args.bound and args.worker != "half",
        poll_allreduce=args.polled and nproc > 1,
    )
    return {
        "rate": history.predictions_per_second,
        "seconds": history.seconds,
        "predictions": history.masked_predictions,
        "loss": [history.train_loss[0], history.train_loss[-1]],
        "peak_rss": history.peak_rss_mib,
        "rss": history.rss_mib,
        "windows": len(source),
    }


def _run_worker(kind: str, argv: list[str]) -> dict:
    """Run one configuration in a fresh process: ``kind`` is a worker name with optional
    ``_bound`` (bind cores) and ``_polled`` (poll the all-reduce) suffixes."""
    worker, *options = kind.split("_")
    out = subprocess.run(
        [sys.executable, __file__, *argv, "--worker", worker, *(f"--{o}" for o in options)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _run_pair(argv: list[str], bound: bool = False) -> float:
    """Two independent 1-process runs on half the batch each, at once: the machine's
    ceiling for 2 processes (the same arithmetic as DDP, with no communication);
    ``bound``: each on its own core."""
    command = [sys.executable, __file__, *argv, "--worker", "half"]
    if bound:
        commands = [[*command, "--bound", "--half-index", str(i)] for i in range(2)]
    else:
        commands = [command, command]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in commands]
    outputs = [proc.communicate()[0] for proc in procs]
    if any(proc.returncode for proc in procs):
        raise RuntimeError("a half-batch worker failed")
    return sum(json.loads(out.strip().splitlines()[-1])["rate"] for out in outputs)


def _fmt_rss(samples: list[list[float]], ranks: int) -> str:
    cells = []
    for sample in samples:
        cells.append(f"{int(sample[0])}: " + " / ".join(f"{r:.0f}" for r in sample[1 : 1 + ranks]))
    return "; ".join(cells)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per throughput run")
    p.add_argument(
        "--global-batch",
        type=int,
        nargs="+",
        default=[128, 512],
        help="windows per step (all ranks); several give one throughput row each",
    )
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--block", choices=["pure", "bert"], default="bert")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--bench-tokens", type=int, default=2_000_000)
    p.add_argument("--corpus-tokens", type=int, default=100_000_000)
    p.add_argument("--stream-steps", type=int, default=400)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bind-cores",
        action="store_true",
        help="also run every configuration with each process bound to its own core(s)",
    )
    p.add_argument(
        "--poll-allreduce",
        action="store_true",
        help="also run every 2-process configuration with poll_allreduce=True",
    )
    p.add_argument("--worker", choices=["one", "two", "half", "stream", "scan"], default=None)
    p.add_argument("--bound", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--polled", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--half-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS, help="markdown report to write")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(_worker(args)))
        return

    argv = [a for a in sys.argv[1:] if a != "--no-write"]
    batches = args.global_batch

    def worker_argv(batch: int) -> list[str]:
        """The command line for one global batch (workers read only the first)."""
        head, rest = [], list(argv)
        if "--global-batch" in rest:
            at = rest.index("--global-batch")
            head, rest = rest[:at], rest[at + 1 :]
            while rest and not rest[0].startswith("--"):
                rest.pop(0)
        return [*head, *rest, "--global-batch", str(batch)]

    machine_start = machine_description("at start")
    variants = ["", "_bound"] if args.bind_cores else [""]
    waits = ["", "_polled"] if args.poll_allreduce else [""]
    kinds = []  # in this order within each repeat: a ratio's two runs meet similar load
    for v in variants:
        kinds += ["one" + v, *(f"two{v}{w}" for w in waits), "pair" + v]
    rates: dict[tuple[str, int], list[float]] = {(k, b): [] for b in batches for k in kinds}
    peaks: dict[tuple, list[float]] = {}
    losses: dict[tuple, list[float]] = {}
    for repeat in range(args.repeats):
        for batch in batches:
            for kind in kinds:
                if kind.startswith("pair"):
                    rates[kind, batch].append(_run_pair(worker_argv(batch), kind != "pair"))
                else:
                    result = _run_worker(kind, worker_argv(batch))
                    rates[kind, batch].append(result["rate"])
                    peaks[kind, batch], losses[kind, batch] = result["peak_rss"], result["loss"]
                print(f"repeat {repeat + 1} batch {batch} {kind}: {rates[kind, batch][-1]:,.0f} /s",
                      file=sys.stderr)  # fmt: skip
    stream = _run_worker("stream", worker_argv(batches[0]))
    scan = _run_worker("scan", worker_argv(batches[0]))
    machine_end = machine_description("at end")

    median = {key: statistics.median(values) for key, values in rates.items()}
    lines = [
        "# Data-parallel MLM training (DDP, gloo): 2 processes vs 1",
        "",
        "Command: `.venv/bin/python benchmarks/bench_ddp.py "
        + " ".join(shlex.quote(a) for a in argv)
        + "`",
        "",
        f"Machine: {machine_start}; {machine_end.split(', load average ')[-1]}.",
        f"Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        "The machine is shared with other engineers' jobs (see the load averages): all"
        " configurations are interleaved within each repeat, so read the ratios.",
        "",
        f"Model: `BidirectionalAttention`, one `{args.block}` layer, V = {args.vocab},"
        f" L = {args.window}, d_model = {args.d_model}, {args.n_heads} heads, float32, Adam"
        f" (a {sum(p.numel() for p in _model(args).parameters()) * 4 / 2**20:.1f} MiB gradient"
        f" to all-reduce per step). Every location of every window is predicted (one pass);"
        f" {args.steps} steps per run; {args.threads} torch thread(s) per process; synthetic"
        " corpus.",
        "",
        "## Throughput",
        "",
        "Masked predictions per second, median of the runs (runs in brackets). Ceiling: two"
        " independent 1-process runs on half the global batch each, at the same time: the"
        " same arithmetic as DDP with no communication, i.e. what 2 processes can reach on"
        " this machine. Paired: the ratio of the 2- and 1-process runs of the same repeat"
        " (run close together, so they met similar load: 1 process, 2 sleeping, 2 polled"
        " when measured, then the ceiling), median (range) over repeats.",
        "",
        "| global batch (windows / masked predictions per step) | processes | 1 process"
        " | 2 processes (DDP; polled: `poll_allreduce`, else sleeping) |"
        " speed-up (of the medians) | speed-up, paired |"
        " ceiling (2 independent halves) | DDP share of the ceiling |"
        " peak RSS per process, 1 / 2 processes (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]

    def paired(v: str, b: int, w: str = "") -> list[float]:
        return [t / o for t, o in zip(rates["two" + v + w, b], rates["one" + v, b], strict=True)]

    placement = {"": "not bound", "_bound": "bound, own cores each (`bind_cores`)"}
    waiting = {"": "", "_polled": ", polled"}
    for b in batches:
        for v, w in ((v, w) for v in variants for w in waits):
            keys = {"one": "one" + v, "two": "two" + v + w, "pair": "pair" + v}
            one, two, pair = (median[key, b] for key in keys.values())
            runs = {k: ", ".join(f"{r:,.0f}" for r in rates[key, b]) for k, key in keys.items()}
            ratios = paired(v, b, w)
            lines.append(
                f"| {b} / {b * args.window:,} | {placement[v]}{waiting[w]} |"
                f" {one:,.0f} ({runs['one']}) |"
                f" {two:,.0f} ({runs['two']}) | **{two / one:.2f}x** |"
                f" {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"
                f" {pair:,.0f}"
                f" ({runs['pair']}), {pair / one:.2f}x | {two / pair:.0%} |"
                f" {peaks['one' + v, b][0]:.0f} /"
                f" {' + '.join(f'{r:.0f}' for r in peaks['two' + v + w, b])} |"
            )

    def verdict(v: str, b: int, w: str) -> str:
        ratio = median["two" + v + w, b] / median["one" + v, b]
        return (
            f"batch {b}, {placement[v]}{waiting[w]}: {ratio:.2f}x (paired"
            f" {statistics.median(paired(v, b, w)):.2f}x) "
            + ("(met)" if ratio >= 1.7 else "(not met)")
        )

    def polled_vs_sleeping(v: str, b: int) -> str:
        ratios = [
            p / t for p, t in zip(rates[f"two{v}_polled", b], rates["two" + v, b], strict=True)
        ]
        faster = sum(r > 1 for r in ratios)
        return (
            f"batch {b}, {placement[v]}: median {statistics.median(ratios):.2f}x"
            f" ({min(ratios):.2f}-{max(ratios):.2f}), polled faster in {faster} of {len(ratios)}"
        )

    first = batches[0]
    lines += [
        "",
        "Goal (issue 5): 2 processes >= 1.7x one process: "
        + "; ".join(verdict(v, b, w) for b in batches for v in variants for w in waits)
        + f". Loss first -> last step at batch {first}: 1 process"
        f" {losses['one', first][0]:.4f} -> {losses['one', first][1]:.4f}, 2 processes"
        f" {losses['two', first][0]:.4f} -> {losses['two', first][1]:.4f}"
        + (
            f", 2 processes polled {losses['two_polled', first][0]:.4f} ->"
            f" {losses['two_polled', first][1]:.4f}"
            if args.poll_allreduce
            else ""
        )
        + " (the same run).",
        *(
            [
                "",
                "Polled against sleeping 2-process runs, the ratio within each repeat (the two"
                " run one after the other): "
                + "; ".join(polled_vs_sleeping(v, b) for b in batches for v in variants)
                + ".",
            ]
            if args.poll_allreduce
            else []
        ),
        "",
        f"## Bounded memory on a {args.corpus_tokens / 1e6:g}M-token corpus",
        "",
        f"Training: 2 processes x {args.threads} thread on a synthetic corpus of"
        f" {args.corpus_tokens:,} tokens ({stream['windows']:,} windows; generated by index,"
        f" never held in memory), {args.stream_steps} steps"
        f" at global batch {first} ({args.stream_steps * first * args.window:,} tokens trained),"
        f" {stream['rate']:,.0f} masked predictions/s. RSS in MiB at step: rank 0 / rank 1:"
        f" {_fmt_rss(stream['rss'], 2)}. Peak RSS per process:"
        f" {' / '.join(f'{r:.0f}' for r in stream['peak_rss'])} MiB.",
        "",
        f"Streaming: one process read every window of one epoch through the sharded source"
        f" (both ranks' shards of all {scan['batches']:,} global batches: {scan['tokens']:,}"
        f" tokens) in {scan['seconds']:.1f} s. RSS in MiB at batch: "
        + "; ".join(f"{int(s):,}: {r:.0f}" for s, r in scan["rss"])
        + ".",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        print(f"written: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
