"""CPU affinity: pin each local rank, and every thread of its process, to its own CPUs."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (all of ``os.cpu_count()`` where unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def core_slice(local_rank: int, local_world: int, num_threads: int | None) -> list[int]:
    """The CPUs of one local rank: a contiguous, disjoint slice of those allowed here."""
    cpus = usable_cpus()
    per_rank = num_threads if num_threads is not None else max(1, len(cpus) // local_world)
    if per_rank * local_world > len(cpus):
        raise ValueError(
            f"bind_cores: {local_world} process(es) x {per_rank} thread(s) need "
            f"{per_rank * local_world} CPUs, this process may use {len(cpus)}"
        )
    return cpus[local_rank * per_rank : (local_rank + 1) * per_rank]


def _thread_ids() -> list[int]:
    """Native ids of this process's threads (Linux); ``[0]``, the caller, elsewhere."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_affinity(tid: int, cpus: Iterable[int]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the thread may have ended meanwhile
        os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def pinned_cores(
    bind: bool, local_rank: int, local_world: int, num_threads: int | None
) -> Iterator[None]:
    """Pin every thread of this process to its rank's CPUs for the duration; then restore.

    Why: with one process per core, the scheduler otherwise moves ranks and the
    threads that carry their all-reduce between cores. Every thread is pinned
    (torch's pool and gloo's may exist already) and threads started meanwhile
    inherit the slice; on exit each thread gets back its own earlier CPUs (new
    ones the calling thread's).
    """
    if not bind:
        yield
        return
    if not hasattr(os, "sched_setaffinity"):
        raise OSError("bind_cores needs os.sched_setaffinity (Linux)")
    mine = core_slice(local_rank, local_world, num_threads)
    before = {tid: os.sched_getaffinity(tid) for tid in _thread_ids()}
    for tid in before:
        _set_affinity(tid, mine)
    try:
        yield
    finally:
        default = before.get(threading.get_native_id(), next(iter(before.values())))
        for tid in _thread_ids():
            _set_affinity(tid, before.get(tid, default))
