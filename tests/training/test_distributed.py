"""Data-parallel training: sources, sharding, 2 processes == 1, bf16, the torchrun path."""

from __future__ import annotations

import json
import math
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from attnmoe import AttentionConfig, BidirectionalAttention
from attnmoe.cli import main
from attnmoe.model import load_model
from attnmoe.training.checkpoint import CheckpointError, list_checkpoints
from attnmoe.training.distributed import (
    ArraySource,
    SyntheticSource,
    global_batch_windows,
    shard_range,
    train_mlm_distributed,
)
from attnmoe.training.distributed.affinity import core_slice


def _model(
    n_layers: int = 1, dtype: torch.dtype = torch.float32, **config
) -> BidirectionalAttention:
    torch.manual_seed(0)
    block = "bert" if n_layers > 1 else "pure"
    cfg = AttentionConfig(
        vocab_size=40, max_len=8, d_model=16, n_heads=2, n_layers=n_layers, block=block, **config
    )
    return BidirectionalAttention(cfg).to(dtype)


def _max_diff(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa if not any(s in k for s in skip))


SOURCE = SyntheticSource(n_tokens=8 * 16 * 12, window=8, vocab_size=40, seed=3, chunk=50)


# -- sources and sharding ---------------------------------------------------------


def test_synthetic_source_is_a_function_of_the_index():
    a = SyntheticSource(10_000, 8, 40, seed=1, chunk=16)
    b = SyntheticSource(10_000, 8, 40, seed=1, chunk=16)
    whole = a.windows(5, 40)  # crosses chunk boundaries
    assert whole.shape == (35, 8) and whole.dtype == torch.long
    assert torch.equal(
        whole, torch.cat([b.windows(30, 40).flip(0), b.windows(5, 30).flip(0)]).flip(0)
    )
    assert int(whole.max()) < 40 and int(whole.min()) >= 0
    assert len(a) == 1250
    clone = pickle.loads(pickle.dumps(a))
    assert torch.equal(clone.windows(5, 40), whole)
    assert not torch.equal(SyntheticSource(10_000, 8, 40, seed=2, chunk=16).windows(5, 40), whole)
    with pytest.raises(IndexError):
        a.windows(0, 1251)


def test_array_source_rows_stream_and_memmap(tmp_path):
    rows = torch.arange(60).view(10, 6)
    assert torch.equal(ArraySource(rows).windows(2, 4), rows[2:4])
    stream = np.arange(65, dtype=np.uint16)  # 10 windows of 6, remainder dropped
    flat = ArraySource(stream, window=6)
    assert len(flat) == 10 and torch.equal(flat.windows(2, 4), rows[2:4])
    np.save(tmp_path / "tokens.npy", np.arange(6_000_000, dtype=np.int32) % 7)
    mapped = ArraySource.from_npy(tmp_path / "tokens.npy", window=6)
    assert len(mapped) == 1_000_000
    # pickled by path, not by content: a spawned process reopens the memmap
    payload = pickle.dumps(mapped)
    assert len(payload) < 10_000
    assert torch.equal(pickle.loads(payload).windows(3, 5), mapped.windows(3, 5))
    with pytest.raises(ValueError, match="window"):
        ArraySource(stream)


def test_shards_partition_each_global_batch_and_epochs_cover_the_corpus():
    n_windows, batch = 100, 8  # 12 batches per epoch, 4 windows never used
    seen = []
    for step in range(12):
        start, stop = global_batch_windows(step, n_windows, batch, seed=5)
        parts = [shard_range(start, batch, r, 4) for r in range(4)]
        assert parts[0][0] == start and parts[-1][1] == stop
        assert all(parts[r][1] == parts[r + 1][0] for r in range(3))
        seen.append(start // batch)
    assert sorted(seen) == list(range(12))  # each batch once per epoch, shuffled
    assert seen != list(range(12))
    next_epoch = [
        global_batch_windows(s, n_windows, batch, seed=5)[0] // batch for s in range(12, 24)
    ]
    assert sorted(next_epoch) == list(range(12)) and next_epoch != seen
    assert [global_batch_windows(s, n_windows, batch, shuffle=False)[0] for s in range(3)] == [
        0,
        8,
        16,
    ]


# -- training -------------------------------------------------------------------------


def test_two_processes_equal_one_process():
    """Issue 5: the same seed and global batch give the same weights (<= 1e-5)."""
    one, two = _model(), _model()
    h1 = train_mlm_distributed(one, SOURCE, global_batch=16, steps=24, lr=1e-2, nproc=1)
    h2 = train_mlm_distributed(
        two, SOURCE, global_batch=16, steps=24, lr=1e-2, nproc=2, num_threads=1
    )
    # b_K has an exactly-zero gradient (it cancels in the softmax, docs/math.md 2.2); in
    # float32 Adam turns its rounding noise into lr-sized steps in either run, so it is
    # compared in the float64 run below instead
    assert _max_diff(one, two, skip=("key.bias",)) <= 1e-5
    assert h2.world_size == 2 and len(h2.peak_rss_mib) == 2
    assert np.allclose(h1.train_loss, h2.train_loss, atol=1e-5)
    assert h1.masked_predictions == h2.masked_predictions == 24 * 16 * 8
    assert h2.train_loss[-1] < h2.train_loss[0]

    # deeper model, BERT random masking drawn per global batch, float64: every parameter
    one, two = _model(2, torch.float64), _model(2, torch.float64)
    h1 = train_mlm_distributed(one, SOURCE, global_batch=16, steps=12, lr=1e-2, nproc=1)
    h2 = train_mlm_distributed(
        two, SOURCE, global_batch=16, steps=12, lr=1e-2, nproc=2, num_threads=1
    )
    assert _max_diff(one, two) <= 1e-5
    assert h1.masked_predictions == h2.masked_predictions < 12 * 16 * 8


@pytest.mark.parametrize("poll", [True, False])
def test_polling_or_sleeping_ranks_give_the_same_weights(poll):
    """poll_allreduce changes how a rank waits, not what it computes."""
    # weight decay makes the update depend on the gradient's scale (Adam alone would not
    # notice a hook that summed the ranks' gradients instead of averaging them)
    one, two = _model(), _model()
    train_mlm_distributed(one, SOURCE, global_batch=16, steps=12, lr=1e-2, weight_decay=0.1)
    history = train_mlm_distributed(
        two, SOURCE, global_batch=16, steps=12, lr=1e-2, weight_decay=0.1, nproc=2, num_threads=1,
        poll_allreduce=poll,
    )  # fmt: skip
    assert _max_diff(one, two, skip=("key.bias",)) <= 1e-5
    assert history.world_size == 2 and history.polled is poll


def test_the_gradient_scale_is_seen_by_the_same_weights_check():
    """The check above can fail: doubling the gradient moves the weights under weight decay."""
    one, two = _model(), _model()
    train_mlm_distributed(one, SOURCE, global_batch=16, steps=12, lr=1e-2, weight_decay=0.1)
    for p in two.parameters():
        p.register_hook(lambda g: 2 * g)
    train_mlm_distributed(two, SOURCE, global_batch=16, steps=12, lr=1e-2, weight_decay=0.1)
    assert _max_diff(one, two, skip=("key.bias",)) > 1e-3


@pytest.mark.parametrize(
    ("requested", "gloo", "ranks", "threads", "expected"),
    [
        (None, True, 2, 1, True),  # 2 x 1 threads on 4 CPUs
        (None, True, 2, 2, True),
        (None, True, 5, 1, False),  # more ranks than CPUs: polling would steal cores
        (None, False, 2, 1, False),  # nccl, or gloo for CUDA tensors
        (False, True, 2, 1, False),
        (True, True, 8, 1, True),  # asked for
    ],
)
def test_polling_by_default_only_where_the_ranks_fit(
    monkeypatch, requested, gloo, ranks, threads, expected
):
    from attnmoe.training.distributed import launch as distributed

    monkeypatch.setattr(distributed, "usable_cpus", lambda: [0, 1, 2, 3])
    assert distributed.resolve_polling(requested, gloo, ranks, threads) is expected


def test_gloo_on_cpu_reads_the_backend_or_the_callers_group(monkeypatch):
    from attnmoe.training.distributed.launch import free_port, uses_gloo_on_cpu

    assert uses_gloo_on_cpu("cpu", None, caller_group=False)
    assert uses_gloo_on_cpu("cpu", "GLOO", caller_group=False)
    assert not uses_gloo_on_cpu("cpu", "mpi", caller_group=False)
    assert not uses_gloo_on_cpu("cuda", None, caller_group=False)
    # a group made without naming a backend: gloo for CPU tensors
    torch.distributed.init_process_group(
        init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        assert uses_gloo_on_cpu("cpu", None, caller_group=True)
    finally:
        torch.distributed.destroy_process_group()


def test_polled_allreduce_hook_runs_once_per_step(monkeypatch):
    from attnmoe.training.distributed import rank as distributed

    calls: list[int] = []
    real_hook = distributed.polled_allreduce_hook

    def counting_hook(state, bucket):  # no annotations, as DDP wants
        calls.append(bucket.index())
        return real_hook(state, bucket)

    monkeypatch.setattr(distributed, "polled_allreduce_hook", counting_hook)
    _torchrun_env(monkeypatch)
    # 1.6 MiB of gradient: DDP's defaults would make two buckets (the first of 1 MiB)
    source = SyntheticSource(n_tokens=8 * 16 * 6, window=8, vocab_size=3000, seed=3)
    config = AttentionConfig(vocab_size=3000, max_len=8, d_model=64, n_heads=2)
    torch.manual_seed(0)
    plain = BidirectionalAttention(config)
    polled = BidirectionalAttention(config)
    polled.load_state_dict(plain.state_dict())
    assert sum(p.numel() for p in plain.parameters()) * 4 > 1.5 * 2**20
    h = train_mlm_distributed(plain, source, global_batch=16, steps=5, poll_allreduce=False)
    assert calls == [] and not h.polled
    h = train_mlm_distributed(polled, source, global_batch=16, steps=5, poll_allreduce=True)
    assert calls == [0] * 5 and h.polled  # one bucket for the whole gradient, every step
    assert _max_diff(plain, polled) <= 1e-6


def test_bf16_autocast_trains_with_finite_loss():
    model = _model(2)
    history = train_mlm_distributed(
        model, SOURCE, global_batch=16, steps=8, lr=1e-2, precision="bf16"
    )
    assert len(history.train_loss) == 8 and all(math.isfinite(v) for v in history.train_loss)
    assert model.output.weight.dtype == torch.float32  # weights stay fp32 under autocast


def test_resume_in_process_is_exact(tmp_path):
    reference = _model()
    h_ref = train_mlm_distributed(reference, SOURCE, global_batch=16, steps=20, lr=1e-2)

    first = _model()
    train_mlm_distributed(
        first,
        SOURCE,
        global_batch=16,
        steps=9,
        lr=1e-2,
        checkpoint_dir=tmp_path,
        checkpoint_every=4,
    )
    assert [s for s, _ in list_checkpoints(tmp_path)] == [8, 9]  # keeps the newest two
    resumed = _model()
    torch.nn.init.zeros_(resumed.output.weight)  # the checkpoint must overwrite everything
    h = train_mlm_distributed(
        resumed, SOURCE, global_batch=16, steps=20, lr=1e-2, checkpoint_dir=tmp_path, resume=True
    )
    assert h.start_step == 9 and h.steps == 20
    assert _max_diff(reference, resumed) == 0.0
    assert h.train_loss == pytest.approx(h_ref.train_loss, abs=0)
    assert torch.equal(load_model(tmp_path / "step-000000020").output.weight, resumed.output.weight)

    with pytest.raises(CheckpointError, match="global_batch"):
        train_mlm_distributed(
            _model(), SOURCE, global_batch=8, steps=30, checkpoint_dir=tmp_path, resume=True
        )
    with pytest.raises(CheckpointError, match="lr"):  # Adam's state would keep 1e-2
        train_mlm_distributed(
            _model(), SOURCE, global_batch=16, steps=30, lr=0.5, checkpoint_dir=tmp_path,
            resume=True,
        )  # fmt: skip
    other = _model(dropout=0.3)  # the same weights' shapes, another model
    with pytest.raises(CheckpointError, match=r"dropout=0\.0 \(this run: 0\.3\)"):
        train_mlm_distributed(
            other, SOURCE, global_batch=16, steps=30, lr=1e-2, checkpoint_dir=tmp_path,
            resume=True,
        )  # fmt: skip


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    h = train_mlm_distributed(
        _model(), SOURCE, global_batch=16, steps=2, checkpoint_dir=tmp_path / "none", resume=True
    )
    assert h.start_step == 0 and h.steps == 2


def _torchrun_env(monkeypatch: pytest.MonkeyPatch, local_rank: int = 0) -> None:
    """What torchrun sets for a one-rank job, on a free port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": str(local_rank)}
    for key, value in {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)


def test_torchrun_environment_runs_one_rank_under_ddp(monkeypatch):
    # what torchrun --nproc_per_node 1 sets: the rank path (process group + DDP) in-process
    _torchrun_env(monkeypatch)
    plain, ranked = _model(), _model()
    train_mlm_distributed(plain, SOURCE, global_batch=16, steps=5, lr=1e-2)
    h = train_mlm_distributed(ranked, SOURCE, global_batch=16, steps=5, lr=1e-2, nproc=7)
    assert h.world_size == 1  # WORLD_SIZE wins over nproc
    assert not torch.distributed.is_initialized()  # the group it made is torn down
    assert _max_diff(plain, ranked) <= 1e-6


# -- binding processes to cores ---------------------------------------------------------


LINUX = hasattr(os, "sched_setaffinity")
TWO_CPUS = pytest.mark.skipif(
    not LINUX or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and 2 CPUs"
)


class _AffinityRecorder:
    """A source that writes, per process, the CPUs it ran on when asked for windows."""

    def __init__(self, source: SyntheticSource, folder: Path, fail: bool = False) -> None:
        self.source, self.folder, self.window, self.fail = source, folder, source.window, fail

    def __len__(self) -> int:
        return len(self.source)

    def windows(self, start: int, stop: int) -> torch.Tensor:
        cpus = sorted(os.sched_getaffinity(0))
        (self.folder / f"{os.getpid()}.json").write_text(json.dumps(cpus))
        if self.fail:
            raise RuntimeError("the source failed")
        return self.source.windows(start, stop)

    def seen(self) -> list[list[int]]:
        return sorted(json.loads(f.read_text()) for f in self.folder.glob("*.json"))


def _affinities() -> dict[int, set[int]]:
    return {int(t): os.sched_getaffinity(int(t)) for t in os.listdir("/proc/self/task")}


@pytest.mark.skipif(not LINUX, reason="Linux only")
def test_core_slices_are_disjoint_and_refuse_oversubscription(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6, 7, 8, 9, 10, 11})
    slices = [core_slice(rank, 4, None) for rank in range(4)]
    assert slices == [[4, 5], [6, 7], [8, 9], [10, 11]]
    assert [core_slice(rank, 2, 1) for rank in range(2)] == [[4], [5]]
    with pytest.raises(ValueError, match="need 9 CPUs"):
        core_slice(0, 3, 3)
    with pytest.raises(ValueError, match="need 9 CPUs"):  # refused before spawning
        train_mlm_distributed(
            _model(), SOURCE, global_batch=18, steps=1, nproc=3, num_threads=3, bind_cores=True
        )


@TWO_CPUS
def test_bind_cores_in_process_pins_every_thread_then_restores(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    waiting, go = threading.Event(), threading.Event()
    seen_by_thread: list[list[int]] = []

    def helper() -> None:  # a thread that exists before the call, like a thread pool
        waiting.set()
        go.wait()
        seen_by_thread.append(sorted(os.sched_getaffinity(0)))

    thread = threading.Thread(target=helper)
    thread.start()
    waiting.wait()
    before = _affinities()

    class Probe(_AffinityRecorder):
        def windows(self, start: int, stop: int) -> torch.Tensor:
            go.set()
            thread.join()
            return super().windows(start, stop)

    plain, bound = _model(), _model()
    train_mlm_distributed(plain, SOURCE, global_batch=16, steps=4, lr=1e-2, num_threads=1)
    train_mlm_distributed(
        bound, Probe(SOURCE, tmp_path), global_batch=16, steps=4, lr=1e-2, num_threads=1,
        bind_cores=True,
    )  # fmt: skip
    assert Probe(SOURCE, tmp_path).seen() == [[cpus[0]]]
    assert seen_by_thread == [[cpus[0]]]
    after = _affinities()
    assert all(after[tid] == before[tid] for tid in after if tid in before)
    assert _max_diff(plain, bound) == 0.0

    # a failing run gives the CPUs back too
    with pytest.raises(RuntimeError, match="the source failed"):
        train_mlm_distributed(
            _model(), _AffinityRecorder(SOURCE, tmp_path, fail=True), global_batch=16,
            steps=1, num_threads=1, bind_cores=True,
        )  # fmt: skip
    assert os.sched_getaffinity(0) == set(cpus)


@TWO_CPUS
def test_bind_cores_gives_each_rank_its_own_core(tmp_path):
    one, two = _model(), _model()
    train_mlm_distributed(one, SOURCE, global_batch=16, steps=6, lr=1e-2)
    recorder = _AffinityRecorder(SOURCE, tmp_path)
    train_mlm_distributed(
        two, recorder, global_batch=16, steps=6, lr=1e-2, nproc=2, num_threads=1, bind_cores=True
    )
    cpus = sorted(os.sched_getaffinity(0))
    assert recorder.seen() == [[cpus[0]], [cpus[1]]]
    assert _max_diff(one, two, skip=("key.bias",)) <= 1e-5


@TWO_CPUS
def test_bind_cores_under_torchrun_follows_the_local_rank(tmp_path, monkeypatch):
    # rank 0 of a 1-rank job that believes it is local rank 1 of 2: the second slice
    _torchrun_env(monkeypatch, local_rank=1)
    cpus = sorted(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE"):
        train_mlm_distributed(_model(), SOURCE, global_batch=16, steps=1, bind_cores=True)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    recorder = _AffinityRecorder(SOURCE, tmp_path)
    train_mlm_distributed(
        _model(), recorder, global_batch=16, steps=2, num_threads=1, bind_cores=True
    )
    assert recorder.seen() == [[cpus[1]]]
    assert os.sched_getaffinity(0) == set(cpus)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"global_batch": 15, "nproc": 2}, "divisible"),
        ({"steps": 3, "epochs": 1}, "exactly one"),
        ({"precision": "fp16"}, "precision"),
        ({"resume": True}, "checkpoint_dir"),
        ({"global_batch": 10_000}, "fewer than one global batch"),
        ({"poll_allreduce": True, "device": "cuda"}, "gloo backend on CPU"),
        ({"poll_allreduce": True, "backend": "mpi"}, "gloo backend on CPU"),
    ],
)
def test_invalid_arguments(kwargs, match):
    args = {"global_batch": 16, "steps": 1, **kwargs}
    if "epochs" in kwargs:
        args["steps"] = kwargs["steps"]
    with pytest.raises(ValueError, match=match):
        train_mlm_distributed(_model(), SOURCE, **args)


def test_windows_longer_than_the_model_are_refused():
    with pytest.raises(ValueError, match="max_len"):
        train_mlm_distributed(_model(), SyntheticSource(1000, 12, 40), steps=1, global_batch=4)


def test_cli_train_ddp(tmp_path, capsys, monkeypatch):
    from attnmoe.training.distributed import trainer as distributed

    binds: list[bool] = []
    real_cores = distributed.pinned_cores

    def recording_cores(bind, *args):
        binds.append(bind)
        return real_cores(bind, *args)

    monkeypatch.setattr(distributed, "pinned_cores", recording_cores)
    polls: list[bool | None] = []
    real_train = distributed.train_mlm_distributed

    def recording_train(*args, **kwargs):
        polls.append(kwargs["poll_allreduce"])
        return real_train(*args, **kwargs)

    # the command looks the trainer up in the package at call time
    import attnmoe.training.distributed as package

    monkeypatch.setattr(package, "train_mlm_distributed", recording_train)
    np.save(tmp_path / "tokens.npy", SOURCE.windows(0, len(SOURCE)).numpy().astype(np.int32))
    code = main(
        [
            "train-ddp",
            "--tokens",
            str(tmp_path / "tokens.npy"),
            "--vocab-size",
            "40",
            "--d-model",
            "16",
            "--steps",
            "6",
            "--global-batch",
            "16",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--checkpoint-every",
            "3",
            "--out",
            str(tmp_path / "model"),
            "--quiet",
            "--poll-allreduce",
            *(["--bind-cores", "--num-threads", "1"] if hasattr(os, "sched_setaffinity") else []),
        ]
    )
    assert code == 0
    assert binds == [LINUX]  # --bind-cores reaches the trainer
    assert polls == [True]
    assert "6 steps on 1 process(es)" in capsys.readouterr().out
    assert load_model(tmp_path / "model").config.max_len == 8
    assert [s for s, _ in list_checkpoints(tmp_path / "ckpt")] == [3, 6]
    # an --out folder that holds something else is refused before training
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    argv = ["train-ddp", "--tokens", str(tmp_path / "tokens.npy"), "--steps", "6", "--quiet",
            "--out", str(project)]  # fmt: skip
    assert main(argv) == 2
    assert "holds no config.json" in capsys.readouterr().err
    assert [p.name for p in project.iterdir()] == ["notes.txt"]
