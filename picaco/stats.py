"""Percentile bootstrap intervals, shared by the evaluation (picaco/eval/stats.py) and a run's held-out
comparison (picaco/method/held_out.py). Pure numpy; every resample is drawn from a generator seeded by
(seed, purpose), so a report is reproducible.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from picaco.rng import derive_seed

DEFAULT_B = 1000
LEVEL = 0.95


class Interval(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    mean: float
    lo: float
    hi: float
    n: int  # prompts


def bootstrap_mean(values, *, b: int, seed: int, purpose: str) -> Interval | None:
    """The mean of `values` (one number per prompt) with its percentile bootstrap interval."""
    x = np.asarray(list(values), dtype=float)
    if len(x) == 0:
        return None
    rng = np.random.default_rng(derive_seed(seed, "bootstrap", purpose))
    means = x[rng.integers(0, len(x), size=(b, len(x)))].mean(axis=1)
    alpha = (1.0 - LEVEL) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(mean=float(x.mean()), lo=float(lo), hi=float(hi), n=len(x))


def paired_difference(a: dict[str, float], b_: dict[str, float], *, b: int, seed: int,
                      purpose: str) -> Interval | None:
    """Mean of a[q] - b_[q] over the prompts both have, with its bootstrap interval."""
    common = sorted(set(a) & set(b_))
    return bootstrap_mean([a[q] - b_[q] for q in common], b=b, seed=seed, purpose=purpose)


def fmt_interval(iv: Interval | dict | None, digits: int = 2) -> str:
    if iv is None:
        return "-"
    d = iv if isinstance(iv, dict) else iv.model_dump()
    return f"{d['mean']:.{digits}f} [{d['lo']:.{digits}f}, {d['hi']:.{digits}f}]"
