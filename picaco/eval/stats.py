"""Uncertainty of the evaluation's means (picaco's extension; docs/evaluation.md, "Statistics").

The unit of resampling is the test prompt: each prompt's responses are averaged first (as the two-stage
means of picaco/eval/metrics.py do), then the prompts are resampled with replacement B times (percentile
bootstrap, 95%). A paired difference compares two methods prompt by prompt on the prompts both scored,
so the prompts' own difficulty cancels out. Every resample is drawn from a generator seeded by the
config's seed and the purpose, so a report is reproducible.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from pydantic import BaseModel, ConfigDict

from picaco.eval.metrics import ResponseRecord
from picaco.rng import derive_seed

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


def per_prompt_scores(records: list[ResponseRecord], value_names: list[str]) -> dict[str, dict[str, float]]:
    """value -> prompt -> mean score of the prompt's judged responses, plus "conformity": each prompt's
    mean over the values (prompts with a value unjudged are left out of it)."""
    acc: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in value_names}
    for r in records:
        if r.scores is not None:
            for v in value_names:
                if v in r.scores:
                    acc[v][r.prompt_id].append(float(r.scores[v]))
    out = {v: {q: float(np.mean(s)) for q, s in per.items()} for v, per in acc.items()}
    prompts = set.intersection(*(set(out[v]) for v in value_names)) if value_names else set()
    out["conformity"] = {q: float(np.mean([out[v][q] for v in value_names])) for q in sorted(prompts)}
    return out


def method_intervals(records: list[ResponseRecord], value_names: list[str], *, b: int, seed: int,
                     purpose: str) -> dict[str, Interval | None]:
    """Per value and for conformity: the mean over prompts with its bootstrap interval."""
    scores = per_prompt_scores(records, value_names)
    return {v: bootstrap_mean([s[q] for q in sorted(s)], b=b, seed=seed, purpose=f"{purpose}/{v}")
            for v, s in scores.items()}


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
