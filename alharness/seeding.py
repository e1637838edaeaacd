"""Every random number in a campaign comes from a generator derived here.

Seeds are derived from the campaign seed and a tuple of string/int keys with
``numpy.random.SeedSequence``, so the streams for "initial pool", "round 3
strategy" and "round 3 training" are independent and never depend on the
order in which other components drew numbers.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _key_to_int(key: object) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key) & 0xFFFFFFFF
    digest = hashlib.sha256(str(key).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def seed_sequence(seed: int, *keys: object) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(_key_to_int, keys)])


def derive_rng(seed: int, *keys: object) -> np.random.Generator:
    """A numpy Generator for (seed, *keys); same inputs give the same stream."""
    return np.random.default_rng(seed_sequence(seed, *keys))


def derive_int_seed(seed: int, *keys: object) -> int:
    """A 63-bit integer seed for libraries that want an int (torch)."""
    return int(seed_sequence(seed, *keys).generate_state(1, dtype=np.uint64)[0]) & (2**63 - 1)
