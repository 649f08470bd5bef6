"""Where DDP's extra time per step goes on this machine (issue 5).

``bench_ddp.py`` measures DDP's throughput against two independent processes
(the ceiling). This probe splits one training step of the same model into its
phases to see what the gap is made of, with 2 processes of one thread each:

- ``ddp``: DistributedDataParallel over gloo, as ``train_mlm_distributed``;
- ``solo``: the same two processes, same process group, no communication;
- ``barrier``: as ``solo``, plus a barrier after each step (lockstep, no data);
- ``ddp_pinned`` / ``barrier_pinned``: as ``ddp`` / ``barrier`` with each rank
  pinned to its own core (``os.sched_setaffinity``), to rule out migrations;
- ``ddp_one_bucket``: ``ddp`` with the whole gradient in one bucket (25 MiB), so
  its all-reduce starts only after the backward pass (DDP's defaults put the
  last-computed ~1 MiB in a first bucket that overlaps the rest of it);
- ``ddp_small_buckets``: ``ddp`` with 0.25 MiB buckets, more overlap;
- ``barrier_spin`` / ``ddp_spin``: as ``barrier`` / ``ddp_one_bucket``, but the
  rank waits for the barrier or all-reduce by polling it in a busy loop instead
  of blocking (``ddp_spin``: ``train_mlm_distributed``'s polling hook), so its core never idles:
  does a rank that sleeps while it waits come back slower?
- a bare gloo all-reduce of a tensor the size of the gradient.

Per step it times forward, backward (DDP's all-reduce runs inside it),
optimizer step, and the process's CPU time; medians over steps, per rank, the
modes interleaved ``--repeats`` times (``--modes`` picks a subset). Writes
``benchmarks/results/ddp/overhead.md``.

Run::

    .venv/bin/python benchmarks/probe_ddp_overhead.py [--repeats 2] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from attnmoe import AttentionConfig, BidirectionalAttention
from attnmoe.bench.machine import machine_description
from attnmoe.training.distributed.rank import Objective, polled_allreduce_hook, wait_polling

RESULTS = Path(__file__).resolve().parent / "results" / "ddp" / "overhead.md"
PHASES = ("forward", "backward", "optimizer", "step", "cpu")
MODES = (
    "ddp", "ddp_pinned", "ddp_one_bucket", "ddp_small_buckets", "solo", "barrier",
    "barrier_pinned", "barrier_spin", "ddp_spin",
)  # fmt: skip
# DDP modes and their bucket_cap_mb (None: DDP's defaults, as train_mlm_distributed)
BUCKET_MIB = {
    "ddp": None, "ddp_pinned": None, "ddp_one_bucket": 25.0, "ddp_small_buckets": 0.25,
    "ddp_spin": 25.0,
}  # fmt: skip


def _init(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=2)


def _model(args: argparse.Namespace) -> BidirectionalAttention:
    """bench_ddp.py's model: one bert layer."""
    torch.manual_seed(args.seed)
    cfg = AttentionConfig(
        vocab_size=args.vocab, max_len=args.window, d_model=args.d_model, n_heads=args.n_heads,
        block="bert",
    )  # fmt: skip
    return BidirectionalAttention(cfg)


def _train(rank: int, port: int, mode: str, args: argparse.Namespace, out: dict) -> None:
    if mode.endswith("_pinned"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {allowed[rank % len(allowed)]})
    _init(rank, port)
    model = _model(args)
    objective = Objective(model)
    net = (
        torch.nn.parallel.DistributedDataParallel(
            objective,
            gradient_as_bucket_view=True,
            **({} if BUCKET_MIB[mode] is None else {"bucket_cap_mb": BUCKET_MIB[mode]}),
        )
        if mode in BUCKET_MIB
        else objective
    )
    if mode == "ddp_spin":
        net.register_comm_hook(None, polled_allreduce_hook)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator().manual_seed(args.seed + rank)
    per_rank = args.global_batch // 2
    scale = 1.0 / (args.global_batch * args.window)
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for step in range(args.steps + 5):
        x = torch.randint(0, args.vocab, (per_rank, args.window), generator=generator)
        cpu0, t0 = time.process_time(), time.perf_counter()
        loss, _ = net(x, None, scale)
        t1 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        if mode == "barrier_spin":
            wait_polling(dist.barrier(async_op=True))
        elif mode.startswith("barrier"):
            dist.barrier()
        t3, cpu3 = time.perf_counter(), time.process_time()
        if step >= 5:  # warm-up: DDP rebuilds its buckets on the first steps
            phases = (t1 - t0, t2 - t1, t3 - t2, t3 - t0, cpu3 - cpu0)
            for phase, seconds in zip(PHASES, phases, strict=True):
                times[phase].append(seconds)
    out[(mode, rank)] = {phase: statistics.median(v) * 1e3 for phase, v in times.items()}
    dist.destroy_process_group()


def _allreduce(rank: int, port: int, numel: int, repeats: int, out: dict) -> None:
    _init(rank, port)
    tensor = torch.randn(numel)
    for _ in range(10):
        dist.all_reduce(tensor)
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(tensor)
        times.append(time.perf_counter() - start)
    if rank == 0:
        out["allreduce"] = statistics.median(times) * 1e3
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--global-batch", type=int, default=128)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown report to write")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    manager = mp.Manager()
    port = 29700
    runs: list[dict] = []
    for repeat in range(args.repeats):
        for mode in args.modes:
            out = manager.dict()
            port += 1
            mp.spawn(_train, args=(port, mode, args, out), nprocs=2)
            runs.append({"repeat": repeat, "mode": mode, **dict(out)})
            step = statistics.mean(out[(mode, r)]["step"] for r in (0, 1))
            print(f"repeat {repeat + 1} {mode}: {step:.1f} ms per step", flush=True)
    numel = sum(p.numel() for p in _model(args).parameters())
    out = manager.dict()
    mp.spawn(_allreduce, args=(port + 1, numel, 200, out), nprocs=2)
    allreduce = out["allreduce"]

    def cell(mode: str, phase: str) -> str:
        values = [run[(mode, r)][phase] for run in runs if run["mode"] == mode for r in (0, 1)]
        return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    command = shlex.join([".venv/bin/python", "benchmarks/probe_ddp_overhead.py", *sys.argv[1:]])
    lines = [
        "# Where DDP's extra time per step goes (2 processes x 1 thread, gloo)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_description()}.",
        "",
        f"Model: one `bert` layer, V = {args.vocab}, L = {args.window}, d_model = "
        f"{args.d_model}, {args.n_heads} heads ({numel:,} parameters, "
        f"{numel * 4 / 2**20:.2f} MiB of float32 gradient); global batch "
        f"{args.global_batch} windows ({args.global_batch // 2} per rank); fused Adam; "
        f"{args.steps} timed steps after 5 warm-up steps, {args.repeats} repeat(s), the "
        "modes interleaved. `solo`: the same two processes at the same time, no "
        "communication (the ceiling of `bench_ddp.py`); `barrier`: `solo` plus a barrier "
        "after every step, so the ranks step in lockstep without exchanging gradients; "
        "`_pinned`: each rank pinned to its own core; `ddp` uses DDP's default buckets "
        "(here two: the last-computed ~1 MiB of gradient is all-reduced while the backward "
        "pass goes on), `ddp_one_bucket` one bucket for the whole gradient (all-reduced "
        "after the backward pass), `ddp_small_buckets` 0.25 MiB buckets; `_spin`: the "
        "rank waits for the barrier (`barrier_spin`) or for a one-bucket all-reduce "
        "(`ddp_spin`, a DDP communication hook) by polling it, yielding its core between "
        "polls, instead of sleeping.",
        "",
        "Milliseconds per step, median over steps, then median (range) over ranks and repeats:",
        "",
        "| mode | forward | backward (+ all-reduce) | optimizer (+ barrier) | step | CPU time |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {mode} | " + " | ".join(cell(mode, p) for p in PHASES) + " |" for mode in args.modes),
        "",
        f"A bare gloo all-reduce of {numel:,} float32 values between the two processes "
        f"(nothing else running in them): {allreduce:.2f} ms (median of 200).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
