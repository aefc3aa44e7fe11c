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


def weighted_conformity(conformity: dict[str, float], relevance: dict[str, float], *, b: int, seed: int,
                        purpose: str) -> Interval | None:
    """Eq. (7)'s mu'_conf = mu_conf x Relevance / 5 with its bootstrap interval: the prompts that have both
    figures are resampled together, and each resample's statistic is the product of its two means (the
    way the point estimate is formed), not the mean of per-prompt products."""
    common = sorted(set(conformity) & set(relevance))
    if not common:
        return None
    c = np.asarray([conformity[q] for q in common], dtype=float)
    r = np.asarray([relevance[q] for q in common], dtype=float)
    rng = np.random.default_rng(derive_seed(seed, "bootstrap", purpose))
    idx = rng.integers(0, len(common), size=(b, len(common)))
    stats = c[idx].mean(axis=1) * r[idx].mean(axis=1) / 5.0
    alpha = (1.0 - LEVEL) / 2
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(mean=float(c.mean() * r.mean() / 5.0), lo=float(lo), hi=float(hi), n=len(common))


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
