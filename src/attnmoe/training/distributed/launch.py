"""Process launch: the process group, spawned ranks, start method, polling defaults."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ...model.auto import load_model
from .affinity import pinned_cores, usable_cpus
from .rank import Job, run_rank


def _init_group(job: Job, rank: int, world: int) -> bool:
    """Initialise the default process group unless the caller already did; True if we did."""
    if dist.is_initialized():
        return False
    backend = job.backend or ("nccl" if job.device == "cuda" else "gloo")
    kwargs: dict[str, Any] = {"backend": backend, "rank": rank, "world_size": world}
    kwargs["init_method"] = job.init_method or "env://"
    dist.init_process_group(**kwargs)
    return True


def uses_gloo_on_cpu(device: str, backend: str | None, caller_group: bool) -> bool:
    """Whether CPU gradients go over gloo: in the caller's process group (``caller_group``,
    under a launcher), else in the one this call makes."""
    if device != "cpu":
        return False
    if caller_group:  # e.g. "cpu:gloo,cuda:nccl" for init_process_group() without a backend
        return "cpu:gloo" in str(dist.get_backend_config()).lower()
    return (backend or "gloo").lower() == "gloo"


def resolve_polling(
    requested: bool | None, gloo_on_cpu: bool, local_world: int, num_threads: int
) -> bool:
    """``poll_allreduce``: as requested, else on when gloo runs on the CPU and this node's
    ranks x ``num_threads`` fit in the CPUs it may use (a polling rank keeps its core busy)."""
    if requested is not None:
        return requested
    return gloo_on_cpu and local_world * num_threads <= len(usable_cpus())


def _spawned_rank(local_rank: int, job: Job, world: int) -> None:
    """Entry point of a process started by :func:`train_mlm_distributed` (``nproc > 1``)."""
    # bound first, before torch's thread pool and gloo's threads exist
    with pinned_cores(job.bind_cores, local_rank, world, job.num_threads):
        if job.num_threads is not None:
            torch.set_num_threads(job.num_threads)
        model = load_model(job.model_dir)
        _init_group(job, local_rank, world)
        try:
            history = run_rank(model, job, local_rank, world, local_rank, use_ddp=True)
            if local_rank == 0:
                model.to("cpu").save_pretrained(Path(job.result_dir) / "final")
                (Path(job.result_dir) / "history.json").write_text(json.dumps(history.to_dict()))
            dist.barrier()
        finally:
            dist.destroy_process_group()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the rendezvous of spawned ranks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_method() -> str:
    """``forkserver`` where available, with torch and the optimizer machinery preloaded.

    A fresh ``spawn`` child pays for importing torch and, on the optimizer's
    first construction, ``torch._dynamo`` (seconds each on a busy machine);
    forkserver children are forked from one server that imported them once, and
    the server has run no torch operation, so no thread pool is forked.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    ctx = multiprocessing.get_context("forkserver")
    # "__main__" (forkserver's default preload) lets children unpickle objects defined in
    # the caller's script, as under spawn
    ctx.set_forkserver_preload(
        ["__main__", "torch", "torch._dynamo", "torch.distributed", __name__]
    )
    return "forkserver"


def _launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ
