"""Ask for a reply that must parse, and ask again while it does not: the judge's scores, the optimizer's
instructions (PICACO's M-step and OPRO's).

Attempt a (0-based) asks for sample `start + a` of its request, so every attempt is its own cache entry
and a rerun asks exactly the same samples. A reply that cannot be parsed (`parse` raises ValueError) or
that a content filter refused is asked again; after the last attempt the answer is *missing* (`value`
None, with the reason and a warning on the log), never a made-up value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from picaco.llm.client import LLMClient
from picaco.llm.request import ChatRequest

log = logging.getLogger(__name__)

T = TypeVar("T")

REFUSED = "the reply was refused by a content filter"


@dataclass(frozen=True)
class Answer(Generic[T]):
    value: T | None  # None: missing after every attempt
    attempts: int  # requests made, retries included
    reason: str | None = None  # why the last attempt was unusable (None when a reply parsed)
    filtered: int = 0  # attempts whose reply a content filter refused


async def ask(client: LLMClient, request: ChatRequest, parse: Callable[[str], T], attempts: int, *,
              start: int = 0, retry: ChatRequest | None = None, what: str = "reply") -> Answer[T]:
    """`parse` of the first usable reply in `attempts` tries; `retry` (default `request`) is the request of
    the tries after the first (e.g. the judge's at its retry temperature). `what` names the reply on the log."""
    reason = None
    filtered = 0
    for attempt in range(attempts):
        asked = request if attempt == 0 or retry is None else retry
        reply = await client.chat(asked, n=1, start=start + attempt, filtered="missing")
        if reply.samples[0].filtered:
            filtered += 1
            reason = REFUSED
            log.info("%s content-filtered (attempt %d/%d)", what, attempt + 1, attempts)
            continue
        try:
            return Answer(parse(reply.text), attempt + 1, filtered=filtered)
        except ValueError as exc:  # a parser's ReplyParseError is a ValueError
            reason = str(exc)
            log.info("%s unusable (attempt %d/%d): %s", what, attempt + 1, attempts, reason)
    log.warning("%s missing after %d attempts: %s", what, attempts, reason)
    return Answer(None, attempts, reason, filtered)
