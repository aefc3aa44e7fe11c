"""Near-duplicate detection: Jaccard similarity of word n-gram shingles, with MinHash LSH for candidates.

Two prompts are near-duplicates when the Jaccard similarity of their sets of word 3-grams (over the
normalized, punctuation-free tokens) is at least the threshold (0.8 by default). Candidate pairs come
from MinHash LSH (128 hash functions, 32 bands of 4 rows: a pair at Jaccard 0.8 becomes a candidate
with probability 1 - (1 - 0.8**4)**32 > 0.9999999) and every candidate is verified exactly, so the
pass never merges a pair below the threshold. Prompts are visited in order and one is dropped when it is
a near-duplicate of an earlier kept prompt. Hash functions are fixed (crc32 of each shingle, then
a*x+b mod 2**31-1 with constants from a splitmix64 stream), so results do not depend on PYTHONHASHSEED
or the numpy version.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from .text import tokens

NUM_PERM = 128
BANDS = 32
_ROWS = NUM_PERM // BANDS
_PRIME = (1 << 31) - 1
_MASK64 = (1 << 64) - 1


def _splitmix64(seed: int, n: int) -> list[int]:
    out, state = [], seed & _MASK64
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out.append(z ^ (z >> 31))
    return out


_stream = _splitmix64(0x5049434143, 2 * NUM_PERM)
_A = np.array([1 + v % (_PRIME - 1) for v in _stream[:NUM_PERM]], dtype=np.uint64)
_B = np.array([v % _PRIME for v in _stream[NUM_PERM:]], dtype=np.uint64)


def shingles(text: str, size: int = 3) -> frozenset[str]:
    """Word `size`-grams of the normalized tokens; a shorter text is one shingle of all its tokens."""
    words = tokens(text)
    if len(words) <= size:
        return frozenset({" ".join(words)})
    return frozenset(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def signature(sh: frozenset[str]) -> np.ndarray:
    hashes = np.fromiter((zlib.crc32(s.encode("utf-8")) % _PRIME for s in sorted(sh)), dtype=np.uint64, count=len(sh))
    if hashes.size == 0:
        hashes = np.zeros(1, dtype=np.uint64)
    # a < 2**31 and x < 2**31, so a*x + b stays below 2**63: no uint64 overflow.
    return ((_A[:, None] * hashes[None, :] + _B[:, None]) % _PRIME).min(axis=1)


def near_duplicates(texts: Sequence[str], threshold: float, size: int = 3) -> list[int | None]:
    """For each text, the index of the earlier kept text it near-duplicates, or None if it is kept."""
    buckets: list[dict[bytes, list[int]]] = [{} for _ in range(BANDS)]
    sets: list[frozenset[str]] = []
    out: list[int | None] = []
    for i, text in enumerate(texts):
        sh = shingles(text, size)
        sets.append(sh)
        sig = signature(sh)
        keys = [sig[b * _ROWS : (b + 1) * _ROWS].tobytes() for b in range(BANDS)]
        candidates = sorted({j for b, key in enumerate(keys) for j in buckets[b].get(key, ())})
        match = next((j for j in candidates if jaccard(sh, sets[j]) >= threshold), None)
        out.append(match)
        if match is None:
            for b, key in enumerate(keys):
                buckets[b].setdefault(key, []).append(i)
    return out


def matches_any(text: str, others: Sequence[frozenset[str]], threshold: float, size: int = 3) -> bool:
    """Whether `text` is a near-duplicate of any of a few shingle sets (used for demonstration queries)."""
    sh = shingles(text, size)
    return any(jaccard(sh, o) >= threshold for o in others)
