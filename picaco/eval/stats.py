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

from picaco.eval.metrics import ResponseRecord
from picaco.stats import Interval, bootstrap_mean, fmt_interval, paired_difference, weighted_conformity

__all__ = ["Interval", "bootstrap_mean", "fmt_interval", "method_intervals", "paired_difference", "per_prompt_relevance",
           "per_prompt_scores", "weighted_conformity"]

# The intervals' row names of Fig. 10's relevance and of Eq. (7)'s relevance-weighted mu'_conf.
RELEVANCE = "Relevance"
WEIGHTED = "mu_conf_weighted"

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


def per_prompt_relevance(records: list[ResponseRecord]) -> dict[str, float]:
    """prompt -> mean Fig. 10 relevance score of its responses the relevance judge scored."""
    acc: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.relevance is not None:
            acc[r.prompt_id].append(float(r.relevance))
    return {q: float(np.mean(s)) for q, s in sorted(acc.items())}


def method_intervals(records: list[ResponseRecord], value_names: list[str], *, b: int, seed: int,
                     purpose: str, relevance: bool = False) -> dict[str, Interval | None]:
    """Per value and for conformity: the mean over prompts with its bootstrap interval. With `relevance`
    (Eq. 7) also Relevance and mu'_conf = mu_conf x Relevance / 5, resampled over the prompts with both."""
    scores = per_prompt_scores(records, value_names)
    out = {v: bootstrap_mean([s[q] for q in sorted(s)], b=b, seed=seed, purpose=f"{purpose}/{v}")
           for v, s in scores.items()}
    if relevance:
        rel = per_prompt_relevance(records)
        out[RELEVANCE] = bootstrap_mean(list(rel.values()), b=b, seed=seed, purpose=f"{purpose}/{RELEVANCE}")
        out[WEIGHTED] = weighted_conformity(scores["conformity"], rel, b=b, seed=seed, purpose=f"{purpose}/{WEIGHTED}")
    return out
