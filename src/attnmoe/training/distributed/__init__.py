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

from .batches import global_batch_windows, shard_range
from .rank import DistributedHistory
from .sources import ArraySource, SyntheticSource, TokenSource
from .trainer import train_mlm_distributed

__all__ = [
    "ArraySource",
    "DistributedHistory",
    "SyntheticSource",
    "TokenSource",
    "global_batch_windows",
    "shard_range",
    "train_mlm_distributed",
]
