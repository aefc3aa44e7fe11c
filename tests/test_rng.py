"""picaco.rng: a generator per (seed, purpose, indices), the same in every process and resume."""

from __future__ import annotations

import subprocess
import sys

from picaco.rng import derive_rng, derive_seed


def test_the_same_parts_give_the_same_seed_and_draws():
    assert derive_seed(7, "noisy", 3) == derive_seed(7, "noisy", 3)
    assert [derive_rng(7, "noisy", 3).random() for _ in range(2)] == [derive_rng(7, "noisy", 3).random()] * 2


def test_every_part_and_its_position_change_the_seed():
    seeds = {derive_seed(7, "noisy", 3), derive_seed(8, "noisy", 3), derive_seed(7, "estep", 3),
             derive_seed(7, "noisy", 4), derive_seed(7, 3, "noisy"), derive_seed(7, "noisy3")}
    assert len(seeds) == 6
    # the separator keeps ("ab", "c") apart from ("a", "bc")
    assert derive_seed(1, "ab", "c") != derive_seed(1, "a", "bc")


def test_the_seed_is_a_64_bit_integer_stable_across_processes():
    s = derive_seed(42, "bootstrap", "x")
    assert 0 <= s < 2 ** 64
    # not Python's salted hash(): another interpreter derives the same number
    out = subprocess.run([sys.executable, "-c", "from picaco.rng import derive_seed; print(derive_seed(42, 'bootstrap', 'x'))"],
                         capture_output=True, text=True, check=True)
    assert int(out.stdout) == s
