"""Per-value scores of candidates and their Pareto front (picaco's extension; docs/method.md, "Pareto front").

Eq. (4) folds all values into one number per candidate. For conflicting values (Tradition vs Hedonism,
Self-direction vs Conformity) that gives one compromise; here each candidate also gets one score per value
on the same pools and the same p_e samples that gave its TC_e, at no extra call:

    V_k(e) = 1/N sum_i sum_j pbar_e(y_ij|x_i) s_k(y_ij),   pbar_e = p_e normalized over prompt i's pool

(s_k the judge's 1-5 score of value k; the self-normalized estimate of the mean score of value k under e,
the same weighting as `pe_weighting: normalized`). The M-step option `picaco.selection: chebyshev` uses
them to steer toward the front: the kept candidates are the best by a weighted Chebyshev scalarization
for each of several weight vectors in turn, e^t the best for equal weights.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from picaco.method.objective import normalize_pe
from picaco.method.state import Candidate, best_first, is_scored

Point = Mapping[str, float]


def value_estimates(per_prompt: Sequence[tuple[np.ndarray, np.ndarray]], names: Sequence[str]) -> dict[str, float] | None:
    """V_k(e) from, per prompt, (p_e over its aligned pool, the pool's scores as an array (pool, K));
    None when no prompt had a pool."""
    rows = [normalize_pe(p) @ scores for p, scores in per_prompt if len(p)]
    if not rows:
        return None
    mean = np.mean(rows, axis=0)
    return {v: float(x) for v, x in zip(names, mean)}


def weight_vectors(k: int) -> list[tuple[float, ...]]:
    """Equal weights first, then each value alone, then each pair half and half: spread over the front
    with no parameter to tune (K + 1 + K(K-1)/2 vectors, K + 1 for two values)."""
    out = [tuple([1.0 / k] * k)]
    out += [tuple(1.0 if i == j else 0.0 for i in range(k)) for j in range(k)]
    if k > 2:
        out += [tuple(0.5 if i in pair else 0.0 for i in range(k)) for pair in itertools.combinations(range(k), 2)]
    return out


def chebyshev(point: Point, ideal: Point, weights: Mapping[str, float]) -> float:
    """max_k w_k (z*_k - V_k): how far the point falls short of the ideal in its worst weighted value."""
    return max(weights[v] * (ideal[v] - point[v]) for v in weights)


# the augmentation of the Chebyshev scalarization: among equal worst shortfalls, the smaller total wins,
# so a weakly dominated candidate never ranks first
AUGMENT = 1e-3


def augmented(point: Point, ideal: Point, weights: Mapping[str, float]) -> float:
    return chebyshev(point, ideal, weights) + AUGMENT * sum(ideal[v] - point[v] for v in weights)


def _ranked(candidates: Sequence[Candidate], names: Sequence[str]) -> list[list[Candidate]]:
    """The candidates with per-value scores, ordered by Chebyshev for each weight vector (ties: the
    older candidate, then the text)."""
    scored = [c for c in candidates if is_scored(c) and c.value_scores]
    if not scored:
        return []
    scores = {id(c): c.value_scores or {} for c in scored}
    ideal = {v: max(scores[id(c)][v] for c in scored) for v in names}
    orders = []
    for w in weight_vectors(len(names)):
        weights = dict(zip(names, w))
        orders.append(sorted(scored, key=lambda c: (augmented(scores[id(c)], ideal, weights), c.born, c.instruction)))
    return orders


def front_first(candidates: Sequence[Candidate], names: Sequence[str]) -> list[Candidate]:
    """Candidates in round-robin over the weight vectors' orders (each one's best, then each one's
    second, ...), then the rest by TC_e: the M-step's kept set spans the front instead of its middle."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for group in itertools.zip_longest(*_ranked(candidates, names)):
        for c in group:
            if c is not None and c.instruction not in seen:
                seen.add(c.instruction)
                out.append(c)
    return out + [c for c in best_first(list(candidates)) if c.instruction not in seen]


def select_balanced(candidates: Sequence[Candidate], names: Sequence[str]) -> Candidate | None:
    """e^t under `selection: chebyshev`: the best for equal weights (None: no candidate has value scores)."""
    orders = _ranked(candidates, names)
    return orders[0][0] if orders else None


def non_dominated(points: Mapping[str, Point], names: Sequence[str]) -> list[str]:
    """Keys of the points no other point dominates (>= on every value, > on one), in the given order.
    Points with a missing or non-finite value are left out."""
    ok = {k: p for k, p in points.items()
          if all(p.get(v) is not None and math.isfinite(p[v]) for v in names)}

    def dominates(a: Point, b: Point) -> bool:
        return all(a[v] >= b[v] for v in names) and any(a[v] > b[v] for v in names)

    return [k for k, p in ok.items() if not any(dominates(q, p) for j, q in ok.items() if j != k)]


def pick(points: Mapping[str, Point], names: Sequence[str], weights: Sequence[float]) -> str:
    """The point with the smallest weighted Chebyshev distance to the ideal of `points` (each value
    scaled to the points' range, so a weight means the same for a value that varies little); ties go
    to the first key."""
    if len(weights) != len(names) or any(w < 0 for w in weights) or not sum(weights):
        raise ValueError(f"weights must be {len(names)} non-negative numbers, not all 0")
    lo = {v: min(p[v] for p in points.values()) for v in names}
    span = {v: (max(p[v] for p in points.values()) - lo[v]) or 1.0 for v in names}
    scaled = {k: {v: (p[v] - lo[v]) / span[v] for v in names} for k, p in points.items()}
    total = sum(weights)
    w = {v: x / total for v, x in zip(names, weights)}
    ideal = {v: 1.0 for v in names}
    return min(scaled, key=lambda k: augmented(scaled[k], ideal, w))
