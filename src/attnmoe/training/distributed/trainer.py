"""The data-parallel trainer: options, then one of three launches (this process,
spawned local processes, or one rank under torchrun); and its ``train-ddp`` command."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist

from ...model.auto import load_model
from ...model.base import MaskedWordModel
from ..options import Masking, check_lr, resolve_masking
from ..threads import torch_threads
from .affinity import core_slice, pinned_cores, usable_cpus
from .launch import (
    _init_group,
    _launched_by_torchrun,
    _spawned_rank,
    _start_method,
    free_port,
    resolve_polling,
    uses_gloo_on_cpu,
)
from .rank import DistributedHistory, Job, run_rank
from .sources import TokenSource

Precision = Literal["fp32", "bf16"]


def train_mlm_distributed(
    model: MaskedWordModel,
    source: TokenSource,
    *,
    global_batch: int = 64,
    steps: int | None = None,
    epochs: float | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    masking: Masking = "auto",
    mask_prob: float = 0.15,
    seed: int = 0,
    shuffle: bool = True,
    nproc: int = 1,
    device: Literal["cpu", "cuda"] = "cpu",
    precision: Precision = "fp32",
    num_threads: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    keep_checkpoints: int = 2,
    resume: bool = False,
    log_every: int = 100,
    verbose: int = 0,
    backend: str | None = None,
    bind_cores: bool = False,
    poll_allreduce: bool | None = None,
) -> DistributedHistory:
    """Masked-language-model training with DistributedDataParallel (Adam).

    Three ways to run, one result: ``nproc=1`` trains in this process;
    ``nproc > 1`` spawns that many local processes (``gloo`` on CPU, ``nccl``
    on CUDA) and waits for them; under ``torchrun`` (``RANK``, ``WORLD_SIZE``
    and ``LOCAL_RANK`` set) ``nproc`` is ignored and this call is one rank of
    the job. The same ``seed`` and ``global_batch`` give the same weights
    whatever the number of processes (up to float summation order).

    Parameters
    ----------
    model
        Initial model, any form; trained in place (its weights on return are
        the final weights, on every rank under torchrun).
    source
        The corpus as fixed-length windows (:class:`TokenSource`);
        ``source.window`` must not exceed ``model.config.max_len``.
    global_batch
        Windows per optimizer step over all processes; divisible by the
        number of processes.
    steps, epochs
        Budget: optimizer steps, or passes over the source (one epoch is
        ``len(source) // global_batch`` steps; the remainder is skipped). One
        of them.
    lr, weight_decay
        Adam's.
    masking
        ``"all"``: every location masked alone (one L x L pass for one-layer
        models); ``"random"``: BERT's 15 % / 80-10-10; ``"auto"``: ``"all"``
        for one layer, else ``"random"``. ``"copies"`` (one-layer models): each
        window is one masked copy, its last token the location masked and the
        others the sentence (:class:`~attnmoe.training.distributed.tables.RowSource`
        makes them from a table's rows); ``source.window`` is then the
        sentence length plus one.
    mask_prob
        Share of locations predicted under random masking.
    seed
        Seeds the batch order, masking and dropout.
    shuffle
        Visit the global batches of each epoch in a seeded random order
        (else in corpus order).
    nproc
        Local processes to spawn when not under torchrun.
    device
        ``"cpu"`` (default) or ``"cuda"`` (rank ``r`` uses GPU ``LOCAL_RANK``).
    precision
        ``"fp32"`` or ``"bf16"`` (autocast; weights and optimizer stay fp32).
    num_threads
        Torch threads per process; default (the CPUs this process may use) //
        ``nproc`` for spawned processes, unchanged otherwise.
    checkpoint_dir, checkpoint_every, keep_checkpoints
        Write a checkpoint (model, optimizer, data position) every
        ``checkpoint_every`` steps and at the end into ``checkpoint_dir``,
        keeping the newest ``keep_checkpoints``. Written by rank 0, atomically.
    resume
        Continue from the newest checkpoint in ``checkpoint_dir`` when there
        is one (else start afresh). The number of processes may differ from
        the run that wrote it; the data settings may not.
    log_every
        Steps between loss reductions (and progress lines when ``verbose``).
    verbose
        0 silent; 1 a progress line per ``log_every`` steps from rank 0.
    backend
        Process-group backend override (default ``nccl`` for CUDA, else ``gloo``).
    bind_cores
        Pin each local process to its own CPUs (Linux): local rank ``r`` gets
        the ``r``-th slice of ``num_threads`` CPUs (default: the CPUs this process
        may use // ``nproc``), so the scheduler cannot move ranks onto each
        other's cores. Every thread of the process is pinned for the duration
        of the call and gets its CPUs back afterwards. Under torchrun the slice
        follows ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE``. Slices follow CPU
        numbers, not physical cores (measurements: ``docs/benchmarks.md``).
    poll_allreduce
        Wait for the gradient all-reduce by polling it instead of sleeping,
        with the whole gradient in one bucket: each rank keeps its core busy
        while it waits, and an idle core can be slow to come back (virtual
        machines). Same arithmetic, same weights. ``None`` (default): on with
        gloo on the CPU when this node's processes x ``num_threads`` fit in the
        CPUs it may use, else off; ``True`` (gloo on CPU only) or ``False``
        to choose. No effect on one process (nothing is reduced).
        Measurements: ``docs/benchmarks.md``.

    Returns
    -------
    DistributedHistory

    Raises
    ------
    FloatingPointError
        If a gradient becomes NaN or infinite (the step is not applied).
    CheckpointError
        If ``resume`` finds a checkpoint of a run with other data settings.
    """
    masking, total_steps = _check_options(
        model, source, masking, global_batch, steps, epochs, lr, mask_prob, precision, num_threads,
        checkpoint_dir, resume,
    )  # fmt: skip
    torchrun = _launched_by_torchrun()
    world = int(os.environ["WORLD_SIZE"]) if torchrun else int(nproc)
    if world < 1:
        raise ValueError("nproc must be positive")
    if global_batch % world:
        raise ValueError(f"global_batch={global_batch} is not divisible by {world} processes")
    gloo_on_cpu = uses_gloo_on_cpu(device, backend, caller_group=torchrun and dist.is_initialized())
    if poll_allreduce and not gloo_on_cpu:
        raise ValueError("poll_allreduce=True is for the gloo backend on CPU")
    job = Job(
        source=source,
        global_batch=global_batch,
        total_steps=total_steps,
        lr=lr,
        weight_decay=weight_decay,
        masking=masking,
        mask_prob=mask_prob,
        seed=seed,
        shuffle=shuffle,
        device=device,
        precision=precision,
        num_threads=num_threads,
        checkpoint_dir=None if checkpoint_dir is None else os.fspath(checkpoint_dir),
        checkpoint_every=checkpoint_every if checkpoint_dir is not None else 0,
        keep_checkpoints=keep_checkpoints,
        resume=resume,
        log_every=max(1, log_every),
        verbose=verbose,
        backend=backend,
        bind_cores=bind_cores,
    )
    if job.checkpoint_dir is not None and job.checkpoint_every <= 0:
        job.checkpoint_every = total_steps  # at least the final checkpoint
    if torchrun:
        return _run_under_launcher(model, job, world, poll_allreduce, gloo_on_cpu)
    if world == 1:
        # fork_rng: per-step reseeding for dropout must not leak into the caller's stream
        with (
            pinned_cores(bind_cores, 0, 1, num_threads),
            torch_threads(num_threads),
            torch.random.fork_rng(devices=[]),
        ):
            return run_rank(model, job, 0, 1, 0, use_ddp=False)
    return _run_spawned(model, job, world, poll_allreduce, gloo_on_cpu)


def _check_options(
    model: MaskedWordModel,
    source: TokenSource,
    masking: str,
    global_batch: int,
    steps: int | None,
    epochs: float | None,
    lr: float,
    mask_prob: float,
    precision: str,
    num_threads: int | None,
    checkpoint_dir: str | os.PathLike | None,
    resume: bool,
) -> tuple[str, int]:
    """Check the options that do not depend on the launch; return the masking and steps."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if not isinstance(source, TokenSource):
        raise TypeError("source must provide window, __len__ and windows(start, stop)")
    masking = resolve_masking(masking, model, ("all", "random", "copies"))
    if masking == "copies" and not model.one_pass_exact:
        raise ValueError("masking='copies' needs a one-layer model")
    length = source.window - (masking == "copies")  # copies: the location comes last
    if length > model.config.max_len:
        raise ValueError(f"windows of {length} tokens exceed max_len={model.config.max_len}")
    if global_batch < 1:
        raise ValueError("global_batch must be positive")
    check_lr(lr)
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob!r}")
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be None or >= 1, got {num_threads!r}")
    n_batches = len(source) // global_batch
    if n_batches < 1:
        raise ValueError(f"the source has {len(source)} windows, fewer than one global batch")
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    total_steps = int(steps) if steps is not None else math.ceil(float(epochs) * n_batches)
    if total_steps < 1:
        raise ValueError("the budget must be at least one step")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    return masking, total_steps


def _run_under_launcher(
    model: MaskedWordModel, job: Job, world: int, poll_allreduce: bool | None, gloo_on_cpu: bool
) -> DistributedHistory:
    """This process is one rank of a job started by ``torchrun`` (or another launcher)."""
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    # a one-process torchrun job still runs DDP (and nccl on CUDA): the same code path
    if job.bind_cores and "LOCAL_WORLD_SIZE" not in os.environ:
        raise ValueError("bind_cores under a launcher needs LOCAL_WORLD_SIZE (torchrun sets it)")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    job.poll_allreduce = resolve_polling(  # before binding narrows the usable CPUs
        poll_allreduce, gloo_on_cpu, local_world, job.num_threads or torch.get_num_threads()
    )
    with pinned_cores(job.bind_cores, local_rank, local_world, job.num_threads):
        ours = _init_group(job, rank, world)
        try:
            with torch_threads(job.num_threads), torch.random.fork_rng(devices=[]):
                return run_rank(model, job, rank, world, local_rank, use_ddp=True)
        finally:
            if ours:
                dist.destroy_process_group()


def _run_spawned(
    model: MaskedWordModel, job: Job, world: int, poll_allreduce: bool | None, gloo_on_cpu: bool
) -> DistributedHistory:
    """Spawn ``world`` local processes, wait for them, and load rank 0's result into ``model``."""
    if job.device == "cuda" and torch.cuda.device_count() < world:
        raise ValueError(
            f"nproc={world} needs {world} GPUs, torch sees {torch.cuda.device_count()}"
        )
    import torch.multiprocessing as mp

    if job.num_threads is None:
        job.num_threads = max(1, len(usable_cpus()) // world)
    job.poll_allreduce = resolve_polling(poll_allreduce, gloo_on_cpu, world, job.num_threads)
    if job.bind_cores:  # refuse here rather than in every child
        if not hasattr(os, "sched_setaffinity"):
            raise OSError("bind_cores needs os.sched_setaffinity (Linux)")
        # children start from the forkserver's CPU set, taken when it first started:
        # the same as ours unless the caller changed its affinity since
        core_slice(world - 1, world, job.num_threads)
    with tempfile.TemporaryDirectory(prefix="attnmoe-ddp-") as tmp:
        job.model_dir = os.path.join(tmp, "initial")
        job.result_dir = tmp
        job.init_method = f"tcp://127.0.0.1:{free_port()}"
        model.save_pretrained(job.model_dir)
        mp.start_processes(
            _spawned_rank, args=(job, world), nprocs=world, join=True, start_method=_start_method()
        )
        final = load_model(os.path.join(tmp, "final"))
        history = DistributedHistory.from_dict(json.loads(Path(tmp, "history.json").read_text()))
    device_before = next(model.parameters()).device
    model.load_state_dict(final.state_dict())
    model.to(device_before).eval()
    return history
