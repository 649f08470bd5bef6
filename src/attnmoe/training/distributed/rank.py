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
from ..losses import mlm_loss
from .batches import _BatchOrder, _bert_masking, _draw_masking, shard_range
from .memory import _peak_rss_mib, _rss_mib
from .seeds import _DROPOUT, _derive_seed


class Objective(nn.Module):
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


def run_rank(
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

    objective = Objective(model)
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
            ddp.register_comm_hook(None, polled_allreduce_hook)
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
