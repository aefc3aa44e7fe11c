"""Eq. (4): the score TC_e of a candidate meta-instruction e on the current pools.

    TC_e = 1/N sum_i { sum_j^{M1} w_ij p_e(y_ij|x_i) + sum_j^{M2} p(yhat_ij|x_i) log q_phi(s|x_i,yhat_ij) }
    w_ij = sum_k log( q_w(v_k|x_i,y_ij)^beta / q_phi(s|x_i,y_ij)^(1/K) )
         = beta * sum_k log q_w(v_k|x_i,y_ij) - log q_phi(s|x_i,y_ij)

Which terms move the argmax over candidates: only p_e(y_ij|x_i). Within one M-step the pools, the
weights w_ij and the noisy term are fixed, so the noisy term (and any constant added to every candidate)
changes the reported TC_e but never which candidate wins; the weights decide *which* pool responses a
candidate is rewarded for making likely.

`pe_weighting`:
- "paper": p_e is Eq. (6)'s mean cosine similarity, used as is. Because log q_w <= 0, w_ij is usually
  negative (beta*K terms of log(score/5)), so sum_j w_ij p_e rewards candidates whose samples are
  *dissimilar* to the whole pool: an instruction that makes the model babble off-topic scores best.
- "normalized" (default): p_e is normalized over each prompt's pool (similarities clipped at 0, divided
  by their sum), i.e. the self-normalized estimate of E_{p_e}[w] restricted to the pool. A candidate then
  wins by making the *better-weighted* pool responses relatively more likely, whatever the overall
  similarity level. The noisy term is normalized the same way.
See docs/method.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def log_q_phi(q_phi: float | np.ndarray, floor: float) -> float | np.ndarray:
    """log of Eq. (5) kept finite: q_phi = 1 + Sim(S,y) - Sim(x,y) can reach 0 or below (a response far
    more similar to the query than to S); it is floored at `floor` (default 0.05, log = -3.0)."""
    return np.log(np.maximum(q_phi, floor))


def response_weight(scores: Mapping[str, int], q_phi: float, beta: float, floor: float,
                    redundancy_weight: float = 1.0) -> float:
    """w_ij of Eq. (4) from the judge's 1-5 scores (q_w = score/5) and the redundancy q_phi.

    `redundancy_weight` is 1 in the paper; 0 ablates q_phi, -1 flips it (for ablation studies)."""
    if not scores:
        raise ValueError("response_weight needs at least one value score")
    for value, s in scores.items():
        if not 1 <= s <= 5:
            raise ValueError(f"judge score for {value!r} must be within 1-5, got {s}")
    conformity = sum(math.log(s / 5.0) for s in scores.values())
    return beta * conformity - redundancy_weight * float(log_q_phi(q_phi, floor))


def normalize_pe(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    total = clipped.sum()
    if total <= 0:
        return np.full(len(clipped), 1.0 / max(1, len(clipped)))
    return clipped / total


@dataclass(frozen=True)
class TCBreakdown:
    total: float
    aligned_term: float  # 1/N sum_i sum_j w_ij p_e(y_ij|x_i): the part that ranks candidates
    noisy_term: float  # 1/N sum_i sum_j p(yhat_ij|x_i) log q_phi(yhat_ij): constant across candidates
    prompts_used: int


def tc_objective(
    aligned: Sequence[tuple[np.ndarray, np.ndarray]],
    noisy: Sequence[tuple[np.ndarray, np.ndarray]],
    weighting: str = "normalized",
) -> TCBreakdown:
    """aligned: per prompt (p_e over its aligned pool, w over the same pool);
    noisy: per prompt (p over its noisy pool, log q_phi over the same pool). Prompts whose aligned pool
    is empty (every response missing a judge score) are left out and not counted in N."""
    if weighting not in ("normalized", "paper"):
        raise ValueError(f"pe_weighting must be 'normalized' or 'paper', got {weighting!r}")
    norm = normalize_pe if weighting == "normalized" else (lambda p: np.asarray(p, dtype=np.float64))
    a_terms = [float(np.dot(norm(p), w)) for p, w in aligned if len(w)]
    n_terms = [float(np.dot(norm(p), lq)) for p, lq in noisy if len(lq)]
    n = len(a_terms)
    aligned_term = sum(a_terms) / n if n else float("nan")
    noisy_term = sum(n_terms) / len(n_terms) if n_terms else 0.0
    return TCBreakdown(total=aligned_term + noisy_term, aligned_term=aligned_term, noisy_term=noisy_term,
                       prompts_used=n)
