"""Seeded randomness: every random choice of a run derives from (run seed, purpose, indices).

Deriving a fresh generator per purpose, instead of drawing from one shared stream, keeps a resumed run
identical to an uninterrupted one: iteration 3's choices do not depend on what iterations 1-2 drew.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, *parts) -> int:
    h = hashlib.sha256(("\x1f".join([str(seed), *map(str, parts)])).encode()).digest()
    return int.from_bytes(h[:8], "little")


def derive_rng(seed: int, *parts) -> random.Random:
    return random.Random(derive_seed(seed, *parts))
