"""A run's spending cap: `client.budget_usd` and `client.budget_tokens`.

- `budget_usd` caps the money of priced calls (chat and embeddings, at the price table's rates).
- `budget_tokens` caps the tokens (prompt + completion) of *unpriced* chat calls and exact-p_e echo calls
  (picaco/llm/logprobs.py): models with no entry in the price table, such as a local llama.cpp engine,
  whose cost is compute time, not money.

The cap is for the whole run, across resumes: what was spent before is read from the run's call log
(every paid call has its line there, written before its answer is cached; picaco/llm/calllog.py), so a
run stopped by its budget and started again with a larger one pays only for what is left.

Before a call is sent, its cost is bounded from its request alone, and the call waits or stops when
`spent + in flight + bound` would pass the cap. The bound is an upper bound, so a cap is never passed:
prompt tokens <= UTF-8 bytes of the messages (a byte-level BPE token holds at least one byte) plus
`TEMPLATE_TOKENS` for the chat template and `MESSAGE_TOKENS` per message; completion tokens <= n x
max_tokens; an echo call's prompt is its rendered text, bounded the same way, and it generates one
token. (The bound is loose, about 4 bytes per English token, so a run may stop with a little of
its budget left unused; the line says how much.) Calls in flight hold their bound until their answer
settles it with the tokens the provider reported. A call that does not fit while others are in flight
waits for them; a call that does not fit alone stops the run with `BudgetExceeded`, before it is sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from picaco.base.config import ClientConfig
from picaco.base.errors import PicacoError
from picaco.llm.calllog import read_call_log
from picaco.llm.pricing import PriceTable
from picaco.llm.request import ChatRequest

T = TypeVar("T")

TEMPLATE_TOKENS = 64  # role markers and a default system prompt the server's chat template may add
MESSAGE_TOKENS = 8  # per message: its start/end markers
UNBOUNDED_COMPLETION = 8192  # completion bound of a request with no max_tokens (a small model's context)
_WAIT_S = 0.02


class BudgetExceeded(PicacoError):
    """The next call would pass the run's budget. Nothing was sent; the run resumes from the cache."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def with_left(self, left: str) -> "BudgetExceeded":
        return BudgetExceeded(f"{self.message}; left to do: {left}; run again with a larger budget to resume "
                              f"(what was paid is cached)")


@dataclass
class Spent:
    usd: float = 0.0
    tokens: int = 0  # of unpriced chat and echo calls
    calls: int = 0


@dataclass(frozen=True)
class CallBound:
    """The most one call can cost, from its request: usd for a priced model, else tokens (chat only)."""

    usd: float = 0.0
    tokens: int = 0


def prompt_token_bound(texts: Sequence[str], chat: bool = True) -> int:
    size = sum(len(t.encode("utf-8")) for t in texts)
    return size + (TEMPLATE_TOKENS + MESSAGE_TOKENS * len(texts) if chat else 0)


def spent_in_log(path: Path | None) -> Spent:
    """What the run paid so far, from its call log's call lines."""
    spent = Spent()
    for line in read_call_log(path) if path is not None else ():
        if line.get("kind") != "call":
            continue
        spent.calls += 1
        cost = line.get("cost_usd")
        if cost is not None:
            spent.usd += float(cost)
        elif line.get("op") in ("chat", "score"):
            spent.tokens += int(line.get("prompt_tokens") or 0) + int(line.get("completion_tokens") or 0)
    return spent


class Budget:
    """The caps of one client; `reserve` before a call, `settle` (or `release`) after it. Thread-safe:
    the client may run event loops in several threads."""

    def __init__(self, usd: float | None, tokens: int | None, prices: PriceTable, log_path: Path | None) -> None:
        self.usd, self.tokens, self.prices = usd, tokens, prices
        self.spent = spent_in_log(log_path) if self.active else Spent()
        self._reserved = CallBound()
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.usd is not None or self.tokens is not None

    def bound(self, model: str, prompt_texts: Sequence[str], n: int = 1, max_tokens: int | None = None,
              chat: bool = True) -> CallBound:
        prompt = prompt_token_bound(prompt_texts, chat)
        completion = n * (UNBOUNDED_COMPLETION if max_tokens is None else max_tokens) if chat else 0
        usd = self.prices.cost(model, prompt, completion)
        if usd is not None:
            return CallBound(usd=usd)
        return CallBound(tokens=prompt + completion if chat else 0)

    def _fits(self, b: CallBound) -> bool:
        r = self._reserved
        return ((self.usd is None or self.spent.usd + r.usd + b.usd <= self.usd)
                and (self.tokens is None or self.spent.tokens + r.tokens + b.tokens <= self.tokens))

    async def reserve(self, b: CallBound, what: str) -> CallBound:
        """Hold `b` for a call about to be sent; raises BudgetExceeded when it cannot fit."""
        if not self.active:
            return b
        while True:
            with self._lock:
                if self._fits(b):
                    self._reserved = CallBound(self._reserved.usd + b.usd, self._reserved.tokens + b.tokens)
                    self._in_flight += 1
                    return b
                if not self._in_flight:  # nothing will free room: stop before sending
                    raise BudgetExceeded(self._stop_line(b, what))
            await asyncio.sleep(_WAIT_S)  # calls in flight hold bounds they will mostly not use

    def release(self, b: CallBound) -> None:
        if self.active:
            with self._lock:
                self._reserved = CallBound(self._reserved.usd - b.usd, self._reserved.tokens - b.tokens)
                self._in_flight -= 1

    def settle(self, b: CallBound, model: str, prompt_tokens: int, completion_tokens: int, chat: bool = True) -> None:
        """The call answered: its bound gives way to what the provider reported."""
        if not self.active:
            return
        cost = self.prices.cost(model, prompt_tokens, completion_tokens)
        with self._lock:
            self.spent.calls += 1
            if cost is not None:
                self.spent.usd += cost
            elif chat:
                self.spent.tokens += prompt_tokens + completion_tokens
        self.release(b)

    @classmethod
    def of(cls, config: ClientConfig, prices: PriceTable) -> "Budget":
        return cls(config.budget_usd, config.budget_tokens, prices, config.call_log_path)

    async def chat(self, request: ChatRequest, n: int, call: Awaitable[T]) -> T:
        """Await `call` (one provider call of `n` samples of `request`, with its retries; it returns
        ((ChatReply, ...), attempts)) inside the budget; it is never started when it cannot fit."""
        texts = [m.content for m in request.messages] + [request.params.response_schema or ""]
        return await self._spend(request.model, texts, f"{request.role} call of {request.model}", call, n,
                                 request.params.max_tokens, chat=True)

    async def embed(self, model: str, texts: Sequence[str], call: Awaitable[T]) -> T:
        """Like chat, for one embedding call ((EmbedReply, ...), attempts)."""
        return await self._spend(model, texts, f"embedding call of {model}", call, chat=False)

    async def score(self, model: str, prompt: str, call: Awaitable[T]) -> T:
        """Like chat, for one echo call of exact p_e (picaco/llm/logprobs.py): `prompt` is the rendered text,
        of which one token is generated ((EchoedPrompt, ...), attempts)."""
        # counted like chat (tokens of an unpriced model are capped); the template allowance covers a BOS token
        return await self._spend(model, [prompt], f"scoring call of {model}", call, 1, 1, chat=True)

    async def _spend(self, model: str, texts: Sequence[str], what: str, call: Awaitable[T], n: int = 1,
                     max_tokens: int | None = None, *, chat: bool) -> T:
        if not self.active:
            return await call
        try:
            b = await self.reserve(self.bound(model, texts, n, max_tokens, chat), what)
        except BaseException:
            getattr(call, "close", lambda: None)()  # a coroutine never started: else Python warns it was never awaited
            raise
        try:
            result = await call
        except BaseException:  # a call that failed holds nothing afterwards
            self.release(b)
            raise
        reply = result[0][0]  # type: ignore[index]  # ((reply, t_call), attempts), as the client's retries return
        if chat:
            self.settle(b, model, reply.prompt_tokens, reply.completion_tokens, chat=True)
        else:
            self.settle(b, model, reply.tokens, 0, chat=False)
        return result

    def _stop_line(self, b: CallBound, what: str) -> str:
        parts = []
        if self.usd is not None and self.spent.usd + b.usd > self.usd:
            parts.append(("client.budget_usd", f"${self.spent.usd:.6f}", f"${self.usd:.6f}",
                          f"${self.usd - self.spent.usd:.6f}", f"${b.usd:.6f}"))
        if self.tokens is not None and self.spent.tokens + b.tokens > self.tokens:
            parts.append(("client.budget_tokens", f"{self.spent.tokens} tokens", f"{self.tokens}",
                          f"{self.tokens - self.spent.tokens}", f"{b.tokens} tokens"))
        field, spent, cap, left, need = parts[0]
        if self.spent.calls == 0:
            return (f"{field} {cap} is smaller than one call: the first {what} is bounded at {need} "
                    f"(see picaco/llm/budget.py); nothing was spent")
        return (f"budget reached: spent {spent} of {field} {cap} on {self.spent.calls} paid calls, {left} left; "
                f"the next {what} is bounded at {need}, so it was not sent")
