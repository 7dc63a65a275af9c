"""Seeds derived from several integers (training seed, epoch, variant, fold)."""

from __future__ import annotations

import numpy as np


def seed_for(*parts: int) -> int:
    """A 63-bit seed derived from integers (epochs, variants, seeds)."""
    state = np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))
