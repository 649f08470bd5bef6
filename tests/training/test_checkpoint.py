"""Training checkpoints: atomic, no pickle, optimizer included; a SIGKILLed run resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from attnmoe import AttentionConfig, BidirectionalAttention
from attnmoe.model import load_model
from attnmoe.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    save_checkpoint,
)
from attnmoe.training.distributed import SyntheticSource, train_mlm_distributed

REPO = Path(__file__).resolve().parents[2]


def _model() -> BidirectionalAttention:
    torch.manual_seed(0)
    return BidirectionalAttention(AttentionConfig(vocab_size=40, max_len=8, d_model=16, n_heads=2))


def _adam_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, n: int) -> None:
    x = torch.randint(0, 40, (4, 8), generator=torch.Generator().manual_seed(1))
    for _ in range(n):
        optimizer.zero_grad()
        model.masked_logits(x).logsumexp(-1).mean().backward()
        optimizer.step()


def test_optimizer_state_round_trips_through_safetensors_and_json():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.8, 0.95))
    _adam_steps(model, opt, 3)
    tensors, meta = optimizer_to_flat(opt)
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert meta["param_groups"][0]["betas"] == [0.8, 0.95]

    twin = _model()
    twin.load_state_dict(model.state_dict())
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1.0)
    optimizer_from_flat(twin_opt, tensors, meta)
    assert twin_opt.param_groups[0]["lr"] == 3e-3 and twin_opt.param_groups[0]["betas"] == (
        0.8,
        0.95,
    )
    _adam_steps(model, opt, 2)
    _adam_steps(twin, twin_opt, 2)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_is_a_model_directory_and_restores_everything(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _adam_steps(model, opt, 2)
    path = save_checkpoint(tmp_path, 2, model, opt, {"step": 2, "seed": 7, "loss": [1.5, 1.25]})
    assert path.name == "step-000000002"
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "manifest.json",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ]
    assert torch.equal(load_model(path).output.weight, model.output.weight)

    fresh = _model()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    saved = load_checkpoint(path, fresh, fresh_opt)
    assert saved == {"step": 2, "trainer": {"step": 2, "seed": 7, "loss": [1.5, 1.25]}}
    assert torch.equal(fresh.output.weight, model.output.weight)
    with pytest.raises(CheckpointError, match="SGD"):
        load_checkpoint(path, None, torch.optim.SGD(fresh.parameters(), lr=1.0))


def test_latest_ignores_staging_and_pruning_keeps_the_newest(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    _adam_steps(model, opt, 1)
    for step in (5, 10, 15):
        save_checkpoint(tmp_path, step, model, opt, {}, keep=2)
    # what a kill during a write leaves: a hidden staging folder, never a step-* one
    (tmp_path / ".step-000000020.tmp-abc").mkdir()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 15]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000000015"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_corrupted_checkpoint_is_reported(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    path = save_checkpoint(tmp_path, 1, model, opt, {})
    (path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(path, _model())
    (path / "trainer_state.json").write_text("{")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


# The killed run: 2 DDP processes, each step slowed down so the test can kill the
# whole process group after a mid-way checkpoint and long before the end.
_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    from attnmoe import AttentionConfig, BidirectionalAttention
    from attnmoe.training.distributed import SyntheticSource, train_mlm_distributed

    class SlowSource(SyntheticSource):
        def windows(self, start, stop):
            time.sleep(0.05)
            return super().windows(start, stop)

    if __name__ == "__main__":
        torch.manual_seed(0)
        model = BidirectionalAttention(
            AttentionConfig(vocab_size=40, max_len=8, d_model=16, n_heads=2)
        )
        source = SlowSource(n_tokens=8 * 16 * 12, window=8, vocab_size=40, seed=3, chunk=50)
        train_mlm_distributed(
            model, source, global_batch=16, steps=STEPS, lr=1e-2, nproc=2, num_threads=1,
            checkpoint_dir=sys.argv[1], checkpoint_every=5,
        )
    """
)
STEPS = 60


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Issue 5: kill the run mid-way (SIGKILL), resume, same final weights."""
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT.replace("STEPS", str(STEPS)))
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    # its own session: SIGKILL to the group takes the launcher and both ranks, like a lost node
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ckpt)], env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not any(s >= 10 for s, _ in list_checkpoints(ckpt)):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = max(s for s, _ in list_checkpoints(ckpt))
    assert 10 <= killed_at < STEPS

    source = SyntheticSource(n_tokens=8 * 16 * 12, window=8, vocab_size=40, seed=3, chunk=50)
    common = {"global_batch": 16, "steps": STEPS, "lr": 1e-2, "nproc": 2, "num_threads": 1}
    resumed = _model()
    h = train_mlm_distributed(resumed, source, checkpoint_dir=ckpt, resume=True, **common)
    assert h.start_step == killed_at and h.steps == STEPS
    reference = _model()
    h_ref = train_mlm_distributed(reference, source, **common)
    for (name, a), b in zip(
        reference.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert (a - b).abs().max().item() <= 1e-6, name
    assert h.train_loss == pytest.approx(h_ref.train_loss, abs=1e-6)


def _flip_byte(path, at: int) -> None:
    """Change one byte in place: the file keeps its size and its header stays whole."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / "model.safetensors").write_bytes(
            (p / "model.safetensors").read_bytes()[:-9]
        ),
        lambda p: (p / "optimizer.safetensors").write_bytes(b"\xff" * 12),
        lambda p: (p / "trainer_state.json").write_text('{"format": "attnmoe-chec'),
        lambda p: (p / "config.json").unlink(),
        lambda p: _flip_byte(p / "model.safetensors", -5),
        lambda p: _flip_byte(p / "optimizer.safetensors", -5),
    ],
    ids=[
        "truncated weights",
        "garbled optimizer",
        "torn state",
        "missing config",
        "flipped weight byte",
        "flipped optimizer byte",
    ],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    source = SyntheticSource(n_tokens=8 * 16 * 4, window=8, vocab_size=40, seed=3)
    common = {
        "global_batch": 16,
        "lr": 1e-2,
        "nproc": 1,
        "num_threads": 1,
        "checkpoint_dir": tmp_path,
    }
    train_mlm_distributed(_model(), source, steps=4, checkpoint_every=2, **common)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 4]
    damage(tmp_path / "step-000000004")
    with pytest.warns(
        UserWarning, match=r"step-000000004 is damaged .*resuming from step-000000002"
    ):
        assert latest_checkpoint(tmp_path) == tmp_path / "step-000000002"
    with pytest.warns(UserWarning, match="resuming from step-000000002"):
        history = train_mlm_distributed(_model(), source, steps=6, resume=True, **common)
    assert history.start_step == 2 and history.steps == 6
    for _, path in list_checkpoints(tmp_path):
        (path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        latest_checkpoint(tmp_path)
