"""The aligned pool R^a (per prompt, accumulated across iterations) and the noisy pool R^n (sampled once)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AlignedEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    text: str
    origin: str  # "t{iteration}/b{bucket}/s{sample}": where it was drawn, for tie-breaks and audits
    scores: dict[str, int]  # the judge's 1-5 score per value
    q_phi: float
    weight: float  # w_ij of Eq. (4)


class NoisyEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    text: str
    origin: str
    q_phi: float
    p: float  # p(yhat|x) of the raw model, Eq. (6)


def update_aligned_pool(pool: list[AlignedEntry], new: list[AlignedEntry], m1: int) -> list[AlignedEntry]:
    """R^a <- R^a U new; keep the top-M1 by w_ij (conformity minus redundancy, Alg. 1 line 8).

    Identical texts are kept once (the earliest), so a response drawn twice cannot fill two slots.
    Ties are broken by origin so the result does not depend on the order responses arrived in.
    """
    seen: dict[str, AlignedEntry] = {}
    for entry in sorted([*pool, *new], key=lambda e: e.origin):
        seen.setdefault(entry.text, entry)
    ranked = sorted(seen.values(), key=lambda e: (-e.weight, e.origin))
    return ranked[:m1]


def select_noisy_pool(entries: list[NoisyEntry], m2: int) -> list[NoisyEntry]:
    """Top-M2 raw responses by q_phi (Alg. 1 line 12: the most redundant ones regularize)."""
    unique: dict[str, NoisyEntry] = {}
    for entry in sorted(entries, key=lambda e: e.origin):
        unique.setdefault(entry.text, entry)
    return sorted(unique.values(), key=lambda e: (-e.q_phi, e.origin))[:m2]
