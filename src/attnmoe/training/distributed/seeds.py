"""Seeded streams of a distributed run: one integer seed per (run, purpose, position)."""

from __future__ import annotations

import numpy as np

# tags that keep the seeded streams of one run independent of each other
DATA, MASK, DROPOUT, SYNTHETIC = 0, 1, 2, 3


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, well mixed (SeedSequence), stable across platforms."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint64)
    return int(state[0]) & (2**63 - 1)
