"""One rank of a data-parallel run: the objective DDP wraps, the step loop, its history."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ...model.base import MaskedWordModel
from ..checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    remove_staging,
    save_checkpoint,
)
from ..losses import masked_copies_loss, mlm_loss
from .batches import BatchOrder, bert_masking, draw_masking, shard_range
from .memory import peak_rss_mib, rss_mib
from .seeds import DROPOUT, derive_seed


class Objective(nn.Module):
    """The MLM loss as a module, so that DDP's forward hooks see every step.

    DDP only synchronises gradients of computations that go through its
    ``forward``; the model's masking paths (``masked_logits``, ``logits``) are
    not ``forward``, hence this wrapper.
    """

    def __init__(self, model: MaskedWordModel, copies: bool = False) -> None:
        super().__init__()
        self.model, self.copies = model, copies

    def forward(
        self, x: Tensor, draws: tuple[Tensor, ...] | None, scale: float
    ) -> tuple[Tensor, Tensor]:
        if self.copies:  # masked copies: a window's last token is its masked location
            loss = masked_copies_loss(self.model, x[:, :-1], x[:, -1])
            return loss * (len(x) * scale), loss.detach() * len(x)
        if draws is None:  # every location masked alone (one pass when exact)
            loss = mlm_loss(self.model, x)
            return loss * (x.numel() * scale), loss.detach() * x.numel()
        inputs, chosen = bert_masking(x, draws, self.model.config.mask_id)
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
class Job:
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
    num_threads: int | None
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


def wait_polling(work: dist.Work) -> None:
    """Wait for ``work`` by polling it: the core stays busy instead of sleeping."""
    while not work.is_completed():
        _yield_core()
    work.wait()  # raises if the collective failed


def polled_allreduce_hook(state, bucket):  # no annotations: DDP checks them, as objects
    """DDP's default gradient all-reduce (divide by the ranks, then sum), waited for by polling.

    The rank's core stays busy (yielding to gloo's threads) instead of sleeping:
    on a virtual machine an idle core may be descheduled, and the rank then comes
    back slower (``benchmarks/probe_ddp_overhead.py``). Same arithmetic as DDP's
    default hook, so the same weights.
    """
    tensor = bucket.buffer().div_(dist.get_world_size(state))
    wait_polling(dist.all_reduce(tensor, group=state, async_op=True))
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(tensor)
    return future


@dataclass
class _Place:
    """Where a rank runs: its index among ``world`` ranks, its device, whether DDP reduces."""

    rank: int
    world: int
    device: torch.device
    use_ddp: bool


def run_rank(
    model: MaskedWordModel, job: Job, rank: int, world: int, local_rank: int, use_ddp: bool
) -> DistributedHistory:
    """Train on one rank; with ``use_ddp`` the process group is already initialised."""
    place = _Place(rank, world, _device_for(job.device, local_rank), use_ddp)
    model.to(place.device)
    # fused Adam: every rank updates every parameter, a cost that does not shrink
    # with the shard; the fused kernel makes it a few times cheaper
    optimizer = torch.optim.Adam(
        model.parameters(), lr=job.lr, weight_decay=job.weight_decay, fused=True
    )
    history = DistributedHistory(world_size=world)
    start_step = _resume(model, optimizer, job, place, history)
    history.start_step = history.steps = start_step
    net = _wrap(Objective(model, job.masking == "copies"), job, place, history)
    order = BatchOrder(len(job.source) // job.global_batch, job.seed, job.shuffle)
    autocast = (
        torch.autocast(place.device.type, dtype=torch.bfloat16)
        if job.precision == "bf16"
        else contextlib.nullcontext()
    )
    model.train()
    log = _LossLog(job, place, history)  # starts the clock
    for step in range(start_step, job.total_steps):
        # dropout: a fresh seeded stream per (step, rank), so resuming needs no RNG state
        torch.manual_seed(derive_seed(job.seed, DROPOUT, step, rank))
        x, draws, n_global = _shard(job, order, step, place, model.config.vocab_size)
        with autocast:
            loss, summed = net(x, draws, world / n_global)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _check_gradients(model, step)
        optimizer.step()
        log.add(summed, n_global)
        done = history.steps = step + 1
        at_checkpoint = (
            job.checkpoint_dir is not None
            and job.checkpoint_every > 0
            and (done % job.checkpoint_every == 0 or done == job.total_steps)
        )
        if at_checkpoint or done % job.log_every == 0 or done == job.total_steps:
            log.flush(done)
        if at_checkpoint and rank == 0:
            state = job.trainer_state(done, len(job.source), world)
            state["train_loss"] = history.train_loss
            path = save_checkpoint(
                job.checkpoint_dir, done, model, optimizer, state, keep=job.keep_checkpoints
            )
            history.checkpoints.append(os.fspath(path))
    if place.device.type == "cuda":
        torch.cuda.synchronize(place.device)
    history.seconds = time.perf_counter() - log.started
    log.flush(history.steps)
    history.peak_rss_mib = _peaks(place)
    model.eval()
    return history


def _resume(
    model: MaskedWordModel,
    optimizer: torch.optim.Optimizer,
    job: Job,
    place: _Place,
    history: DistributedHistory,
) -> int:
    """Load the newest checkpoint when resuming (rank 0 chooses); return the step to start at."""
    if place.rank == 0 and job.checkpoint_dir is not None:
        remove_staging(job.checkpoint_dir)  # a killed run may have left a half-written one
    if not job.resume or job.checkpoint_dir is None:
        return 0
    # rank 0 chooses; every rank loads the same step (the folder must be shared)
    latest = latest_checkpoint(job.checkpoint_dir) if place.rank == 0 else None
    chosen = torch.tensor([-1 if latest is None else int(latest.name.split("-")[1])])
    if place.use_ddp:
        chosen = chosen.to(place.device)
        dist.broadcast(chosen, src=0)
    if int(chosen) < 0:
        return 0
    path = checkpoint_path(job.checkpoint_dir, int(chosen))
    if not path.is_dir():
        raise CheckpointError(
            f"rank {place.rank} cannot see {path}: the checkpoint folder must be shared "
            "by every node (or copied to each) to resume"
        )
    saved = load_checkpoint(path, model, optimizer)
    trainer = saved["trainer"]
    expected = job.trainer_state(saved["step"], len(job.source), place.world)
    for key in _MUST_MATCH:
        if trainer.get(key) != expected[key]:
            raise CheckpointError(
                f"{path} was written with {key}={trainer.get(key)!r}, this run has "
                f"{expected[key]!r}; resume with the same settings or a new folder"
            )
    history.train_loss = list(trainer.get("train_loss", []))[: saved["step"]]
    return saved["step"]


def _wrap(objective: Objective, job: Job, place: _Place, history: DistributedHistory) -> nn.Module:
    """The objective under DDP (polling its all-reduce if asked), or as is on one process."""
    if not place.use_ddp:
        return objective
    kwargs: dict[str, Any] = {}
    if job.poll_allreduce:
        # one bucket, all-reduced after the backward pass: polling a first bucket
        # would hold up the rest of the backward pass anyway
        params = objective.model.parameters()
        grad_mib = sum(p.numel() * p.element_size() for p in params) / 2**20
        kwargs["bucket_cap_mb"] = grad_mib + 1.0
    ddp = nn.parallel.DistributedDataParallel(
        objective,
        device_ids=[place.device.index] if place.device.type == "cuda" else None,
        gradient_as_bucket_view=True,
        **kwargs,
    )
    if job.poll_allreduce:
        ddp.register_comm_hook(None, polled_allreduce_hook)
        history.polled = True
    return ddp


def _shard(
    job: Job, order: BatchOrder, step: int, place: _Place, vocab_size: int
) -> tuple[Tensor, tuple[Tensor, ...] | None, int]:
    """This rank's windows of step ``step``, their masking draws (None: all locations) and
    the global batch's prediction count."""
    batch_start = order.batch(step) * job.global_batch
    lo, hi = shard_range(batch_start, job.global_batch, place.rank, place.world)
    x = job.source.windows(lo, hi)
    if x.shape[0] != job.global_batch // place.world:
        raise ValueError(f"the source returned {x.shape[0]} windows for {lo}..{hi}")
    ids = x[:, :-1] if job.masking == "copies" else x  # copies: the location comes last
    # a masked copy may hold the mask token (a missing cell) in its context
    top = vocab_size + (job.masking == "copies")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= top):
        raise ValueError(f"token ids of windows {lo}..{hi} outside [0, {top})")
    if job.masking == "copies":  # one prediction per window
        draws, n_global = None, job.global_batch
    elif job.masking == "all":
        draws, n_global = None, job.global_batch * x.shape[1]
    else:
        full = draw_masking(
            job.seed, step, (job.global_batch, x.shape[1]), job.mask_prob, vocab_size
        )
        n_global = int(full[3].sum())
        part = slice(lo - batch_start, hi - batch_start)
        draws = tuple(t[part].to(place.device) for t in full)
    return x.to(place.device, non_blocking=True), draws, n_global


def _check_gradients(model: MaskedWordModel, step: int) -> None:
    # gradients are identical on every rank after DDP's all-reduce, so every
    # rank takes the same decision here without another collective
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if not torch.isfinite(norm):
        raise FloatingPointError(
            f"MLM gradient became {norm.item()} at step {step + 1}; the weights are kept "
            "from the last finite step. Try a lower learning rate or precision='fp32'."
        )


class _LossLog:
    """This rank's summed loss per step, reduced over the ranks at log points."""

    def __init__(self, job: Job, place: _Place, history: DistributedHistory) -> None:
        self.job, self.place, self.history = job, place, history
        self.pending: list[Tensor] = []
        self.counts: list[int] = []
        self.started = time.perf_counter()

    def add(self, summed: Tensor, n_global: int) -> None:
        self.pending.append(summed)
        self.counts.append(n_global)
        self.history.masked_predictions += n_global

    def flush(self, step: int) -> None:
        if not self.pending:
            return
        place, history, n = self.place, self.history, len(self.pending)
        local = torch.stack([p.double() for p in self.pending]).to(place.device)
        rss = torch.zeros(place.world, dtype=torch.float64, device=place.device)
        rss[place.rank] = rss_mib()
        packed = torch.cat([local, rss])
        if place.use_ddp:
            dist.all_reduce(packed)
        losses = packed[:n].cpu() / torch.tensor(self.counts, dtype=torch.float64)
        history.train_loss.extend(losses.tolist())
        history.rss_mib.append([float(step), *packed[n:].tolist()])
        self.pending.clear()
        self.counts.clear()
        if self.job.verbose > 0 and place.rank == 0:
            rate = history.masked_predictions / max(time.perf_counter() - self.started, 1e-9)
            print(
                f"step {step}/{self.job.total_steps} loss {history.train_loss[-1]:.4f} "
                f"{rate:,.0f} masked predictions/s, rss {rss[0].item():.0f} MiB",
                flush=True,
            )


def _peaks(place: _Place) -> list[float]:
    """Peak resident memory of every rank's process, MiB."""
    peaks = torch.zeros(place.world, dtype=torch.float64, device=place.device)
    peaks[place.rank] = peak_rss_mib()
    if place.use_ddp:
        dist.all_reduce(peaks)
    return peaks.tolist()
