"""Data-parallel MLM training on ``torch.distributed`` (DDP), with resumable checkpoints.

The engine is PyTorch's own: :class:`~torch.nn.parallel.DistributedDataParallel`
over a ``gloo`` (CPU) or ``nccl`` (CUDA) process group, launched either by
:func:`train_mlm_distributed` itself (``nproc`` local processes through
:mod:`torch.multiprocessing`) or by ``torchrun`` on one or several nodes (the
function then runs the calling rank, read from ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK``). See ``docs/scale.md``.

Why the result does not depend on the number of processes
---------------------------------------------------------
- Data: a :class:`TokenSource` is a random-access list of fixed-length token
  windows. Optimizer step ``s`` trains on one *global batch* of ``B``
  consecutive windows, the batch chosen by a seeded permutation of the
  epoch's batches that depends only on ``(seed, epoch)``; rank ``r`` of ``W``
  reads windows ``r*B/W .. (r+1)*B/W`` of that batch and nothing else
  (sharded streaming: no rank ever holds the corpus).
- Loss: each rank returns ``W * (its summed loss) / (global prediction
  count)``; DDP averages gradients over ranks, so the applied gradient is the
  gradient of the global mean loss, the same as one process with batch ``B``.
- Randomness: random (BERT) masking is drawn for the whole global batch from a
  generator seeded by ``(seed, step)``, and each rank keeps its rows; dropout
  draws from the global generator reseeded by ``(seed, step, rank)``. Nothing
  random carries over from one step to the next, so a checkpoint needs no RNG
  state and resuming is exact.

Equal weights across process counts hold up to floating-point summation order
(gradients summed over ranks vs within one batch): about 1e-7 relative per step.
Dropout draws depend on how the batch is split, so with ``dropout > 0`` the
runs agree in distribution only; a resumed run still equals an uninterrupted
one with the same ``nproc``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import resource
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .base import MaskedWordModel
from .checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    remove_staging,
    save_checkpoint,
)
from .training import mlm_loss

__all__ = [
    "ArraySource",
    "DistributedHistory",
    "SyntheticSource",
    "TokenSource",
    "global_batch_windows",
    "shard_range",
    "train_mlm_distributed",
]

Precision = Literal["fp32", "bf16"]
Masking = Literal["auto", "all", "random"]

# tags that keep the seeded streams of one run independent of each other
_DATA, _MASK, _DROPOUT, _SYNTHETIC = 0, 1, 2, 3


def _derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, well mixed (SeedSequence), stable across platforms."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)
    return int(state[0]) & (2**63 - 1)


# -- token sources -------------------------------------------------------------


@runtime_checkable
class TokenSource(Protocol):
    """A random-access sequence of fixed-length token windows.

    The whole interface is ``window`` (tokens per window), ``len(source)``
    (number of windows) and ``windows(start, stop)``. Implementations must be
    picklable cheaply (they are sent to spawned processes): hold a path, not
    the data, for large corpora, and open files lazily.
    """

    window: int

    def __len__(self) -> int: ...

    def windows(self, start: int, stop: int) -> Tensor:
        """Windows ``start .. stop - 1`` as ``(stop - start, window)`` int64 token ids (CPU)."""
        ...


class ArraySource:
    """Windows cut from an in-memory or memory-mapped array of token ids.

    Parameters
    ----------
    tokens
        ``(N, L)`` token ids (each row a window) or a 1-D token stream, cut into
        non-overlapping windows of ``window`` tokens (a trailing remainder is
        dropped). A tensor, a NumPy array or a NumPy memmap.
    window
        Tokens per window; required for a 1-D stream, must equal ``L`` for 2-D.

    Notes
    -----
    For a corpus larger than memory use :meth:`from_npy`: the file is
    memory-mapped in each process and only the requested windows are read.
    """

    def __init__(self, tokens: Tensor | np.ndarray, window: int | None = None) -> None:
        self._path: str | None = None
        self._array: Tensor | np.ndarray | None = tokens
        self._setup(tokens.shape, window)

    @classmethod
    def from_npy(cls, path: str | os.PathLike, window: int | None = None) -> ArraySource:
        """A source over a ``.npy`` file of integer token ids, memory-mapped (no pickle)."""
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{path} holds {array.dtype}, not integer token ids")
        source = cls(array, window)
        source._path = os.fspath(path)
        return source

    def _setup(self, shape: tuple[int, ...], window: int | None) -> None:
        if len(shape) == 2:
            if window is not None and window != shape[1]:
                raise ValueError(f"window={window} but the rows hold {shape[1]} tokens")
            self.window, self._n = int(shape[1]), int(shape[0])
        elif len(shape) == 1:
            if window is None or window < 1:
                raise ValueError(
                    "a 1-D token stream needs a positive window length (window=, or --window)"
                )
            self.window, self._n = int(window), int(shape[0]) // int(window)
        else:
            raise ValueError(f"tokens must be 1-D or 2-D, got shape {tuple(shape)}")
        self._flat = len(shape) == 1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._path is not None:  # reopen the memmap in the receiving process
            state["_array"] = None
        return state

    def __len__(self) -> int:
        return self._n

    def _data(self) -> Tensor | np.ndarray:
        if self._array is None:
            self._array = np.load(self._path, mmap_mode="r", allow_pickle=False)
        return self._array

    def windows(self, start: int, stop: int) -> Tensor:
        if not 0 <= start <= stop <= self._n:
            raise IndexError(f"windows {start}..{stop} outside 0..{self._n}")
        data = self._data()
        if self._flat:
            chunk = data[start * self.window : stop * self.window]
        else:
            chunk = data[start:stop]
        if isinstance(chunk, np.ndarray):
            chunk = torch.from_numpy(np.array(chunk, dtype=np.int64))  # copies out of the map
        return chunk.reshape(stop - start, self.window).long()


class SyntheticSource:
    """A corpus of any size that never exists in memory: windows made from their index.

    Each window is a noisy arithmetic progression modulo ``vocab_size``
    (``x_j = a + j*c mod V``, a share ``noise`` of tokens replaced by random
    words), so masked words are predictable from their neighbours and the MLM
    loss falls. Windows are generated in chunks of ``chunk`` from a generator
    seeded by ``(seed, chunk index)``: any window range is reproducible in any
    process, at a memory cost of one chunk.

    Parameters
    ----------
    n_tokens
        Corpus size in tokens (``n_tokens // window`` windows).
    window
        Tokens per window.
    vocab_size
        Token ids are ``0 .. vocab_size - 1``.
    seed
        Corpus seed.
    noise
        Share of tokens replaced by uniform random words.
    chunk
        Windows generated together.
    """

    def __init__(
        self,
        n_tokens: int,
        window: int,
        vocab_size: int,
        seed: int = 0,
        noise: float = 0.1,
        chunk: int = 256,
    ) -> None:
        if window < 1 or vocab_size < 2 or n_tokens < window:
            raise ValueError("need window >= 1, vocab_size >= 2 and n_tokens >= window")
        self.window, self.vocab_size, self.seed = int(window), int(vocab_size), int(seed)
        self.noise, self.chunk = float(noise), int(chunk)
        self._n = int(n_tokens) // self.window
        self._cache: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return self._n

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None}

    def _chunk(self, index: int) -> Tensor:
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        gen = torch.Generator().manual_seed(_derive_seed(self.seed, _SYNTHETIC, index))
        n = min(self.chunk, self._n - index * self.chunk)
        v = self.vocab_size
        start = torch.randint(v, (n, 1), generator=gen)
        stride = torch.randint(1, min(v, 8), (n, 1), generator=gen)
        tokens = (start + stride * torch.arange(self.window)) % v
        noisy = torch.rand(n, self.window, generator=gen) < self.noise
        tokens = torch.where(noisy, torch.randint(v, (n, self.window), generator=gen), tokens)
        self._cache = (index, tokens)
        return tokens

    def windows(self, start: int, stop: int) -> Tensor:
        if not 0 <= start <= stop <= self._n:
            raise IndexError(f"windows {start}..{stop} outside 0..{self._n}")
        parts = []
        for index in range(
            start // self.chunk, (stop - 1) // self.chunk + 1 if stop > start else 0
        ):
            lo = max(start, index * self.chunk) - index * self.chunk
            hi = min(stop, (index + 1) * self.chunk) - index * self.chunk
            parts.append(self._chunk(index)[lo:hi])
        if not parts:
            return torch.empty(0, self.window, dtype=torch.long)
        return torch.cat(parts).long()


# -- which windows each rank reads ---------------------------------------------


class _BatchOrder:
    """The epoch's order of global batches; a permutation that depends on (seed, epoch) only.

    Memory is 8 bytes per global batch of one epoch (e.g. 6 KiB for 100M tokens
    in batches of 1024 windows of 128 tokens), never the corpus.
    """

    def __init__(self, n_batches: int, seed: int, shuffle: bool) -> None:
        self.n_batches, self.seed, self.shuffle = n_batches, seed, shuffle
        self._epoch, self._perm = -1, None

    def batch(self, step: int) -> int:
        epoch, position = divmod(step, self.n_batches)
        if not self.shuffle:
            return position
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(_derive_seed(self.seed, _DATA, epoch))
            self._perm, self._epoch = torch.randperm(self.n_batches, generator=gen), epoch
        return int(self._perm[position])


def global_batch_windows(
    step: int, n_windows: int, global_batch: int, seed: int = 0, shuffle: bool = True
) -> tuple[int, int]:
    """Window range ``(start, stop)`` of the global batch of optimizer step ``step``."""
    order = _BatchOrder(n_windows // global_batch, seed, shuffle)
    first = order.batch(step) * global_batch
    return first, first + global_batch


def shard_range(batch_start: int, global_batch: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous slice of a global batch that ``rank`` of ``world_size`` reads."""
    per_rank = global_batch // world_size
    start = batch_start + rank * per_rank
    return start, start + per_rank


# -- the objective DDP wraps -----------------------------------------------------


def _bert_masking(x: Tensor, draws: tuple[Tensor, ...], mask_id: int) -> tuple[Tensor, Tensor]:
    """BERT's 15 % / 80-10-10 masking from pre-drawn numbers (same rule as ``random_mask_loss``).

    Returns the model input and the bool ``(B, L)`` of locations to predict.
    """
    _u, action, random_words, chosen = draws
    inputs = torch.where(chosen & (action < 0.8), mask_id, x)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_words, inputs)
    return inputs, chosen


def _draw_masking(
    seed: int, step: int, shape: tuple[int, int], mask_prob: float, vocab_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The random numbers of BERT masking for a whole global batch (identical on every rank)."""
    gen = torch.Generator().manual_seed(_derive_seed(seed, _MASK, step))
    u = torch.rand(shape, generator=gen)
    chosen = u < mask_prob
    # every window predicts something: its highest-u location (as random_mask_loss)
    chosen[torch.arange(shape[0]), u.argmax(dim=1)] = True
    action = torch.rand(shape, generator=gen)
    random_words = torch.randint(vocab_size, shape, generator=gen)
    return u, action, random_words, chosen


class _Objective(nn.Module):
    """The MLM loss as a module, so that DDP's forward hooks see every step.

    DDP only synchronises gradients of computations that go through its
    ``forward``; the model's masking paths (``masked_logits``, ``logits``) are
    not ``forward``, hence this wrapper.
    """

    def __init__(self, model: MaskedWordModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, x: Tensor, draws: tuple[Tensor, ...] | None, scale: float
    ) -> tuple[Tensor, Tensor]:
        if draws is None:  # every location masked alone (one pass when exact)
            loss = mlm_loss(self.model, x)
            return loss * (x.numel() * scale), loss.detach() * x.numel()
        inputs, chosen = _bert_masking(x, draws, self.model.config.mask_id)
        logits = self.model.logits(inputs)
        summed = F.cross_entropy(logits[chosen].float(), x[chosen], reduction="sum")
        return summed * scale, summed.detach()


# -- history ---------------------------------------------------------------------


@dataclass
class DistributedHistory:
    """What happened during :func:`train_mlm_distributed` (as seen by rank 0).

    Attributes
    ----------
    train_loss
        Global mean MLM loss of every optimizer step, from step 1 (resumed runs
        include the steps before the checkpoint).
    steps
        Optimizer steps done in total.
    start_step
        Step this session started from (0 unless resumed).
    world_size
        Processes in this session.
    seconds
        Wall time of this session's training loop.
    masked_predictions
        Masked predictions (loss terms) this session, all ranks together.
    peak_rss_mib
        Peak resident memory of each rank's process, MiB.
    rss_mib
        ``[step, rss of rank 0, rss of rank 1, ...]`` sampled at each log point.
    checkpoints
        Checkpoints written this session.
    polled
        Whether the ranks waited for the gradient all-reduce by polling it
        (``poll_allreduce``); False on one process, where nothing is reduced.
    """

    train_loss: list[float] = field(default_factory=list)
    steps: int = 0
    start_step: int = 0
    world_size: int = 1
    seconds: float = 0.0
    masked_predictions: int = 0
    peak_rss_mib: list[float] = field(default_factory=list)
    rss_mib: list[list[float]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    polled: bool = False

    @property
    def predictions_per_second(self) -> float:
        """Masked predictions per second this session (all ranks)."""
        return self.masked_predictions / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistributedHistory:
        return cls(**data)


# -- one rank ----------------------------------------------------------------------


@dataclass
class _Job:
    """Everything a rank needs; picklable (sent to spawned processes)."""

    source: Any
    global_batch: int
    total_steps: int
    lr: float
    weight_decay: float
    masking: str
    mask_prob: float
    seed: int
    shuffle: bool
    device: str
    precision: str
    threads: int | None
    checkpoint_dir: str | None
    checkpoint_every: int
    keep_checkpoints: int
    resume: bool
    log_every: int
    verbose: int
    backend: str | None
    bind_cores: bool = False
    poll_allreduce: bool = False  # resolved from the caller's None / True / False
    init_method: str | None = None
    model_dir: str | None = None  # spawned ranks load the initial model from here
    result_dir: str | None = None  # rank 0 of a spawned run writes the result here

    def trainer_state(self, step: int, n_windows: int, world_size: int) -> dict[str, Any]:
        n_batches = n_windows // self.global_batch
        return {
            "step": step,
            "epoch": step // n_batches,
            "batch_in_epoch": step % n_batches,
            "seed": self.seed,
            "global_batch": self.global_batch,
            "window": self.source.window,
            "n_windows": n_windows,
            "shuffle": self.shuffle,
            "masking": self.masking,
            "mask_prob": self.mask_prob,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "precision": self.precision,
            "world_size": world_size,
        }


# what a resumed run must share with the run that wrote the checkpoint
_MUST_MATCH = (
    "seed", "global_batch", "window", "n_windows", "shuffle", "masking", "mask_prob",
    "lr", "weight_decay",  # the optimizer state would bring back the old ones, silently
)  # fmt: skip


def _rss_mib() -> float:
    """Current resident memory of this process (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_rss_mib()


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def _device_for(kind: str, local_rank: int) -> torch.device:
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' but torch sees no CUDA device")
        index = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    raise ValueError(f"device must be 'cpu' or 'cuda', got {kind!r}")


# lets gloo's own threads run on this core between polls
_yield_core = getattr(os, "sched_yield", lambda: time.sleep(0))


def _wait_polling(work: dist.Work) -> None:
    """Wait for ``work`` by polling it: the core stays busy instead of sleeping."""
    while not work.is_completed():
        _yield_core()
    work.wait()  # raises if the collective failed


def _polled_allreduce_hook(state, bucket):  # no annotations: DDP checks them, as objects
    """DDP's default gradient all-reduce (divide by the ranks, then sum), waited for by polling.

    The rank's core stays busy (yielding to gloo's threads) instead of sleeping:
    on a virtual machine an idle core may be descheduled, and the rank then comes
    back slower (``benchmarks/probe_ddp_overhead.py``). Same arithmetic as DDP's
    default hook, so the same weights.
    """
    tensor = bucket.buffer().div_(dist.get_world_size(state))
    _wait_polling(dist.all_reduce(tensor, group=state, async_op=True))
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(tensor)
    return future


def _run_rank(
    model: MaskedWordModel, job: _Job, rank: int, world: int, local_rank: int, use_ddp: bool
) -> DistributedHistory:
    """Train on one rank; with ``use_ddp`` the process group is already initialised."""
    source = job.source
    n_windows = len(source)
    n_batches = n_windows // job.global_batch
    per_rank = job.global_batch // world
    device = _device_for(job.device, local_rank)
    model.to(device)
    # fused Adam: every rank updates every parameter, a cost that does not shrink
    # with the shard; the fused kernel makes it a few times cheaper
    optimizer = torch.optim.Adam(
        model.parameters(), lr=job.lr, weight_decay=job.weight_decay, fused=True
    )
    history = DistributedHistory(world_size=world)

    start_step = 0
    if rank == 0 and job.checkpoint_dir is not None:
        remove_staging(job.checkpoint_dir)  # a killed run may have left a half-written one
    if job.resume and job.checkpoint_dir is not None:
        # rank 0 chooses; every rank loads the same step (the folder must be shared)
        latest = latest_checkpoint(job.checkpoint_dir) if rank == 0 else None
        chosen = torch.tensor([-1 if latest is None else int(latest.name.split("-")[1])])
        if use_ddp:
            chosen = chosen.to(device)
            dist.broadcast(chosen, src=0)
        if int(chosen) >= 0:
            path = checkpoint_path(job.checkpoint_dir, int(chosen))
            if not path.is_dir():
                raise CheckpointError(
                    f"rank {rank} cannot see {path}: the checkpoint folder must be shared "
                    "by every node (or copied to each) to resume"
                )
            saved = load_checkpoint(path, model, optimizer)
            trainer = saved["trainer"]
            expected = job.trainer_state(saved["step"], n_windows, world)
            for key in _MUST_MATCH:
                if trainer.get(key) != expected[key]:
                    raise CheckpointError(
                        f"{path} was written with {key}={trainer.get(key)!r}, this run has "
                        f"{expected[key]!r}; resume with the same settings or a new folder"
                    )
            start_step = saved["step"]
            history.train_loss = list(trainer.get("train_loss", []))[:start_step]
    history.start_step = history.steps = start_step

    objective = _Objective(model)
    if use_ddp:
        kwargs: dict[str, Any] = {}
        if job.poll_allreduce:
            # one bucket, all-reduced after the backward pass: polling a first bucket
            # would hold up the rest of the backward pass anyway
            grad_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
            kwargs["bucket_cap_mb"] = grad_mib + 1.0
        ddp = nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=True,
            **kwargs,
        )
        if job.poll_allreduce:
            ddp.register_comm_hook(None, _polled_allreduce_hook)
            history.polled = True
    else:
        ddp = objective
    masking = job.masking
    order = _BatchOrder(n_batches, job.seed, job.shuffle)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if job.precision == "bf16"
        else contextlib.nullcontext()
    )
    cfg = model.config
    pending: list[Tensor] = []  # this rank's summed loss per step, reduced at log points
    pending_counts: list[int] = []

    def flush(step: int) -> None:
        if not pending:
            return
        local = torch.stack([p.double() for p in pending]).to(device)
        rss = torch.zeros(world, dtype=torch.float64, device=device)
        rss[rank] = _rss_mib()
        packed = torch.cat([local, rss])
        if use_ddp:
            dist.all_reduce(packed)
        losses = packed[: len(pending)].cpu() / torch.tensor(pending_counts, dtype=torch.float64)
        history.train_loss.extend(losses.tolist())
        history.rss_mib.append([float(step), *packed[len(pending) :].tolist()])
        pending.clear()
        pending_counts.clear()
        if job.verbose > 0 and rank == 0:
            rate = history.masked_predictions / max(time.perf_counter() - started, 1e-9)
            print(
                f"step {step}/{job.total_steps} loss {history.train_loss[-1]:.4f} "
                f"{rate:,.0f} masked predictions/s, rss {rss[0].item():.0f} MiB",
                flush=True,
            )

    model.train()
    started = time.perf_counter()
    for step in range(start_step, job.total_steps):
        # dropout: a fresh seeded stream per (step, rank), so resuming needs no RNG state
        torch.manual_seed(_derive_seed(job.seed, _DROPOUT, step, rank))
        batch_start = order.batch(step) * job.global_batch
        lo, hi = shard_range(batch_start, job.global_batch, rank, world)
        x = source.windows(lo, hi)
        if x.shape[0] != per_rank:
            raise ValueError(f"the source returned {x.shape[0]} windows for {lo}..{hi}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= cfg.vocab_size):
            raise ValueError(f"token ids of windows {lo}..{hi} outside [0, {cfg.vocab_size})")
        if masking == "all":
            draws, n_global = None, job.global_batch * x.shape[1]
        else:
            full = _draw_masking(
                job.seed, step, (job.global_batch, x.shape[1]), job.mask_prob, cfg.vocab_size
            )
            n_global = int(full[3].sum())
            part = slice(lo - batch_start, hi - batch_start)
            draws = tuple(t[part].to(device) for t in full)
        x = x.to(device, non_blocking=True)
        with autocast:
            loss, summed = ddp(x, draws, world / n_global)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # gradients are identical on every rank after DDP's all-reduce, so every
        # rank takes the same decision here without another collective
        norm = torch.nn.utils.get_total_norm(
            [p.grad for p in model.parameters() if p.grad is not None]
        )
        if not torch.isfinite(norm):
            raise FloatingPointError(
                f"MLM gradient became {norm.item()} at step {step + 1}; the weights are kept "
                "from the last finite step. Try a lower learning rate or precision='fp32'."
            )
        optimizer.step()
        pending.append(summed)
        pending_counts.append(n_global)
        history.masked_predictions += n_global
        done = step + 1
        history.steps = done
        at_checkpoint = (
            job.checkpoint_dir is not None
            and job.checkpoint_every > 0
            and (done % job.checkpoint_every == 0 or done == job.total_steps)
        )
        if at_checkpoint or done % job.log_every == 0 or done == job.total_steps:
            flush(done)
        if at_checkpoint and rank == 0:
            state = job.trainer_state(done, n_windows, world)
            state["train_loss"] = history.train_loss
            path = save_checkpoint(
                job.checkpoint_dir, done, model, optimizer, state, keep=job.keep_checkpoints
            )
            history.checkpoints.append(os.fspath(path))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    history.seconds = time.perf_counter() - started
    flush(history.steps)
    peaks = torch.zeros(world, dtype=torch.float64, device=device)
    peaks[rank] = _peak_rss_mib()
    if use_ddp:
        dist.all_reduce(peaks)
    history.peak_rss_mib = peaks.tolist()
    model.eval()
    return history


def _init_group(job: _Job, rank: int, world: int) -> bool:
    """Initialise the default process group unless the caller already did; True if we did."""
    if dist.is_initialized():
        return False
    backend = job.backend or ("nccl" if job.device == "cuda" else "gloo")
    kwargs: dict[str, Any] = {"backend": backend, "rank": rank, "world_size": world}
    kwargs["init_method"] = job.init_method or "env://"
    dist.init_process_group(**kwargs)
    return True


def _gloo_on_cpu(device: str, backend: str | None, caller_group: bool) -> bool:
    """Whether CPU gradients go over gloo: in the caller's process group (``caller_group``,
    under a launcher), else in the one this call makes."""
    if device != "cpu":
        return False
    if caller_group:  # e.g. "cpu:gloo,cuda:nccl" for init_process_group() without a backend
        return "cpu:gloo" in str(dist.get_backend_config()).lower()
    return (backend or "gloo").lower() == "gloo"


def _resolve_polling(
    requested: bool | None, gloo_on_cpu: bool, local_world: int, threads: int
) -> bool:
    """``poll_allreduce``: as requested, else on when gloo runs on the CPU and this node's
    ranks x threads fit in the CPUs it may use (a polling rank keeps its core busy)."""
    if requested is not None:
        return requested
    return gloo_on_cpu and local_world * threads <= len(_usable_cpus())


def _spawned_rank(local_rank: int, job: _Job, world: int) -> None:
    """Entry point of a process started by :func:`train_mlm_distributed` (``nproc > 1``)."""
    from .io import load_model

    # bound first, before torch's thread pool and gloo's threads exist
    with _cores(job.bind_cores, local_rank, world, job.threads):
        if job.threads is not None:
            torch.set_num_threads(job.threads)
        model = load_model(job.model_dir)
        _init_group(job, local_rank, world)
        try:
            history = _run_rank(model, job, local_rank, world, local_rank, use_ddp=True)
            if local_rank == 0:
                model.to("cpu").save_pretrained(Path(job.result_dir) / "final")
                (Path(job.result_dir) / "history.json").write_text(json.dumps(history.to_dict()))
            dist.barrier()
        finally:
            dist.destroy_process_group()


def _free_port() -> int:
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


def _usable_cpus() -> list[int]:
    """The CPUs this process may run on (all of ``os.cpu_count()`` where unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _core_slice(local_rank: int, local_world: int, threads: int | None) -> list[int]:
    """The CPUs of one local rank: a contiguous, disjoint slice of those allowed here."""
    cpus = _usable_cpus()
    per_rank = threads if threads is not None else max(1, len(cpus) // local_world)
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
def _cores(bind: bool, local_rank: int, local_world: int, threads: int | None) -> Iterator[None]:
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
    mine = _core_slice(local_rank, local_world, threads)
    before = {tid: os.sched_getaffinity(tid) for tid in _thread_ids()}
    for tid in before:
        _set_affinity(tid, mine)
    try:
        yield
    finally:
        default = before.get(threading.get_native_id(), next(iter(before.values())))
        for tid in _thread_ids():
            _set_affinity(tid, before.get(tid, default))


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
    threads: int | None = None,
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
        for one layer, else ``"random"``.
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
    threads
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
        the ``r``-th slice of ``threads`` CPUs (default: the CPUs this process
        may use // ``nproc``), so the scheduler cannot move ranks onto each
        other's cores. Every thread of the process is pinned for the duration
        of the call and gets its CPUs back afterwards. Under torchrun the slice
        follows ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE``. Slices follow CPU
        numbers, not physical cores. On the project's shared 2-core VM it made
        no consistent difference on average, but with ``poll_allreduce`` the
        runs were steadier (``docs/benchmarks.md``, "Scale-out").
    poll_allreduce
        Wait for the gradient all-reduce by polling it instead of sleeping,
        with the whole gradient in one bucket: each rank keeps its core busy
        while it waits, and an idle core can be slow to come back (virtual
        machines). Same arithmetic, same weights. ``None`` (default): on with
        gloo on the CPU when this node's processes x ``threads`` fit in the
        CPUs it may use, else off; ``True`` (gloo on CPU only) or ``False``
        to choose. In three runs on the project's 2-core VM, 2 processes (not
        bound) reached 1.5-2.1x one process polling, 1.3-1.8x sleeping; with
        ``bind_cores`` too, 1.72-1.79x at 512 windows per step
        (``docs/benchmarks.md``, "Scale-out"). No effect on one process
        (nothing is reduced).

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
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if not isinstance(source, TokenSource):
        raise TypeError("source must provide window, __len__ and windows(start, stop)")
    if source.window > model.config.max_len:
        raise ValueError(f"windows of {source.window} tokens exceed max_len={model.config.max_len}")
    if masking == "auto":
        masking = "all" if model.one_pass_exact else "random"
    if masking not in ("all", "random"):
        raise ValueError(f"masking must be 'auto', 'all' or 'random', got {masking!r}")
    if global_batch < 1:
        raise ValueError("global_batch must be positive")
    if not lr > 0 or not math.isfinite(lr):  # 0 would train nothing, silently
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob!r}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be None or >= 1, got {threads!r}")
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

    torchrun = _launched_by_torchrun()
    world = int(os.environ["WORLD_SIZE"]) if torchrun else int(nproc)
    if world < 1:
        raise ValueError("nproc must be positive")
    if global_batch % world:
        raise ValueError(f"global_batch={global_batch} is not divisible by {world} processes")
    gloo_on_cpu = _gloo_on_cpu(device, backend, caller_group=torchrun and dist.is_initialized())
    if poll_allreduce and not gloo_on_cpu:
        raise ValueError("poll_allreduce=True is for the gloo backend on CPU")
    job = _Job(
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
        threads=threads,
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
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        # a one-process torchrun job still runs DDP (and nccl on CUDA): the same code path
        if bind_cores and "LOCAL_WORLD_SIZE" not in os.environ:
            raise ValueError(
                "bind_cores under a launcher needs LOCAL_WORLD_SIZE (torchrun sets it)"
            )
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        job.poll_allreduce = _resolve_polling(  # before binding narrows the usable CPUs
            poll_allreduce, gloo_on_cpu, local_world, threads or torch.get_num_threads()
        )
        with _cores(bind_cores, local_rank, local_world, threads):
            ours = _init_group(job, rank, world)
            try:
                with _threads(threads), torch.random.fork_rng(devices=[]):
                    return _run_rank(model, job, rank, world, local_rank, use_ddp=True)
            finally:
                if ours:
                    dist.destroy_process_group()

    if world == 1:
        # fork_rng: per-step reseeding for dropout must not leak into the caller's stream
        with (
            _cores(bind_cores, 0, 1, threads),
            _threads(threads),
            torch.random.fork_rng(devices=[]),
        ):
            return _run_rank(model, job, 0, 1, 0, use_ddp=False)

    if device == "cuda" and torch.cuda.device_count() < world:
        raise ValueError(
            f"nproc={world} needs {world} GPUs, torch sees {torch.cuda.device_count()}"
        )
    import torch.multiprocessing as mp

    if job.threads is None:
        job.threads = max(1, len(_usable_cpus()) // world)
    job.poll_allreduce = _resolve_polling(poll_allreduce, gloo_on_cpu, world, job.threads)
    if bind_cores:  # refuse here rather than in every child
        if not hasattr(os, "sched_setaffinity"):
            raise OSError("bind_cores needs os.sched_setaffinity (Linux)")
        # children start from the forkserver's CPU set, taken when it first started:
        # the same as ours unless the caller changed its affinity since
        _core_slice(world - 1, world, job.threads)
    with tempfile.TemporaryDirectory(prefix="attnmoe-ddp-") as tmp:
        job.model_dir = os.path.join(tmp, "initial")
        job.result_dir = tmp
        job.init_method = f"tcp://127.0.0.1:{_free_port()}"
        model.save_pretrained(job.model_dir)
        mp.start_processes(
            _spawned_rank, args=(job, world), nprocs=world, join=True, start_method=_start_method()
        )
        from .io import load_model

        final = load_model(os.path.join(tmp, "final"))
        history = DistributedHistory.from_dict(json.loads(Path(tmp, "history.json").read_text()))
    device_before = next(model.parameters()).device
    model.load_state_dict(final.state_dict())
    model.to(device_before).eval()
    return history
