"""One worker pays for a sample several workers miss at once (a shared cache, e.g. Postgres).

`fetch_claimed` is the claim dance chat and embed share: claim the keys about to be fetched, fetch the
granted ones, wait for the rest (bounded by the claim's lifetime), read them from the cache, and claim
again what is still missing (its holder died or refused to store it: the claim lapsed). On a backend
that does not coordinate workers (diskcache) every claim is granted, so everything is fetched as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

from picaco.base.errors import CacheError
from picaco.llm.cache_base import CacheBackend


async def fetch_claimed(cache: CacheBackend, items: Sequence[Hashable], key_of: Callable[[Any], str],
                        fetch: Callable[[list], Awaitable[None]], read: Callable[[str], object | None],
                        ttl_s: float) -> dict:
    """Fetch `items` (via `fetch`, which caches what it got) unless another worker holds their claim:
    those are read from the cache once written. Returns {item: value read} for the ones another worker paid."""
    if cache.mode != "normal":  # refresh must recompute, off has nobody to share with: fetch everything
        await fetch(list(items))
        return {}
    shared: dict = {}
    left = list(items)
    while left:
        granted = cache.claim([key_of(i) for i in left], ttl_s)
        mine = [i for i in left if key_of(i) in granted]
        theirs = [i for i in left if key_of(i) not in granted]
        if mine:  # pay for ours first: a worker that holds some keys of ours may wait for ours in turn
            try:
                await fetch(mine)
            except BaseException:
                with contextlib.suppress(CacheError):  # the fetch's error is the one to report; the claims lapse
                    cache.release([key_of(i) for i in mine])
                raise
            cache.release([key_of(i) for i in mine])  # what was not stored (refused, empty) others fetch now
        if not theirs:
            break
        try:
            await asyncio.wait_for(cache.wait_for([key_of(i) for i in theirs]), timeout=ttl_s)
        except TimeoutError:
            pass  # a holder that renewed its claim: ask again (it lapses unless it is alive and calling)
        left = []
        for i in theirs:
            value = read(key_of(i))
            if value is None:
                left.append(i)  # no row: the claim lapsed; claim it again
            else:
                shared[i] = value
    return shared
