"""The one path of every request, chat, embeddings and exact-p_e echoes alike:

    keys -> cache lookup -> in-flight de-duplication -> claims -> fetch (a slot, retries, a provider)
         -> store -> account

`CallPath` runs it once for every kind of request; a `Job` (picaco/llm/jobs.py) says what differs: its
items and their cache keys, how a cached record becomes a value, the provider call that fetches the
missing items, and its lines on the call log. The cache answers first: a provider (its SDK client, its
API key, a managed engine) is built only from inside a job's `fetch`, which runs only for items that
neither the cache, an identical request in flight nor another worker's claim could serve.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from picaco.base.config import ClientConfig
from picaco.llm.budget import Budget
from picaco.llm.cache import CacheBackend, open_cache
from picaco.llm.calllog import CallLog
from picaco.llm.claims import fetch_claimed
from picaco.llm.errors import MalformedReply, ProviderError, RetriesExhausted
from picaco.llm.pricing import PriceTable
from picaco.llm.providers import endpoint_for, make_provider
from picaco.llm.providers.base import Provider
from picaco.llm.slots import PrioritySlots, priority_of
from picaco.llm.usage import RoleUsage, books

log = logging.getLogger(__name__)


@dataclass
class _LoopState:
    """Everything bound to one event loop: futures, semaphores and SDK clients (their connection pools)."""

    loop: asyncio.AbstractEventLoop
    providers: dict[str, Provider] = field(default_factory=dict)
    semaphores: dict[str, PrioritySlots] = field(default_factory=dict)
    pending: dict[str, asyncio.Future] = field(default_factory=dict)


@dataclass
class Tally:
    """What one request's provider calls did, summed over its calls."""

    calls: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Measure:
    """One provider reply as the call log counts it."""

    got: int  # items it answered
    prompt_tokens: int
    completion_tokens: int = 0
    filtered: int = 0  # items a content filter refused


@dataclass(frozen=True)
class Outcome:
    """How one request's items were served, for its line on the call log."""

    n: int  # items asked (distinct keys)
    hits: int
    tally: Tally
    t0: float
    shared: int = 0  # served by an identical request in flight
    remote: int = 0  # paid by another worker holding the claim
    filtered: int = 0
    error: Exception | None = None

    def summary(self) -> dict:
        """The fields that end every request line."""
        status = "hit" if self.hits == self.n else ("miss" if self.hits == 0 else "partial")
        return {"status": "error" if self.error else status,
                "provider_calls": self.tally.calls, "retries": max(0, self.tally.attempts - self.tally.calls),
                "latency_ms": round((time.perf_counter() - self.t0) * 1000, 3)}


class Job(ABC):
    """What one kind of request (chat, embed, score) brings to the path; `items` each have their own cache key."""

    op: str  # the call log's name of the operation
    noun: str  # what an item is called in an error message
    role: str
    model: str
    provider_name: str
    items: list

    @abstractmethod
    def key(self, item: Any) -> str: ...

    @abstractmethod
    def read(self, cache: CacheBackend, key: str) -> Any | None:
        """The cached record under `key`, or None."""

    def cached(self, item: Any, record: Any) -> Any:
        """The value of `item` from its cached record."""
        return record

    def check(self, path: "CallPath") -> None:
        """Raise (one clear line) when the provider cannot serve this kind of request; run before the
        provider is built, only when something must be fetched."""

    @abstractmethod
    async def fetch(self, path: "CallPath", prov: Provider, items: list, deliver: Callable[[Any, Any], None],
                    tally: Tally) -> None:
        """Pay for `items` (via `path.paid_call`), store what may be cached, `deliver(item, value)` each."""

    @abstractmethod
    def measure(self, reply: Any) -> Measure: ...

    def filtered(self, fetched: list) -> int:
        return 0

    def saved(self, hits: list) -> tuple[int, int] | None:
        """(prompt, completion) tokens the cache hits saved, or None when not counted."""
        return None

    @abstractmethod
    def line(self, outcome: Outcome) -> dict:
        """The request's line on the call log; what it paid is on its call lines (picaco/llm/calllog.py)."""


class CallPath:
    """The shared state of the path (cache, call log, prices, usage by role, providers, slots, retries)
    and the path itself (`serve`). `LLMClient` is its public face."""

    def __init__(self, config: ClientConfig | None = None, *, cache: CacheBackend | None = None) -> None:
        self.config = config or ClientConfig()
        self.cache = cache or open_cache(self.config.cache_dir, self.config.cache_mode, self.config.cache_url)
        self._owns_cache = cache is None
        self.prices = PriceTable.load(self.config.prices_path)
        self.call_log = CallLog(self.config.call_log_path)
        self.budget = Budget.of(self.config, self.prices)  # the run's spending caps (checked before each call)
        self.usage: dict[str, RoleUsage] = defaultdict(RoleUsage)
        self._state: _LoopState | None = None
        self._jitter_rng = random.Random(self.config.retry.jitter_seed)
        self._endpoints: dict[str, str] = {}
        # samples per call each endpoint (Provider.concurrency_key) was found to return, below its setting
        self._sample_limits: dict[str, int] = {}
        self._engines: dict[str, Any] = {}  # provider name -> the engine its calls need (or None); see aclose
        self._engines_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------------
    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            # A new event loop (e.g. one asyncio.run per Prefect task) cannot reuse futures,
            # semaphores or HTTP connection pools of the old one.
            self._state = _LoopState(loop)
        return self._state

    def provider(self, name: str) -> Provider:
        state = self._loop_state()
        prov = state.providers.get(name)
        if prov is None:
            prov = make_provider(name, self.config.providers)
            with self._engines_lock:  # loops in several threads may build this provider at once: one engine
                if name not in self._engines:
                    # a managed engine starts here, before the first call that needs it; the loop waits for it
                    self._engines[name] = prov.start_engine(name, prov.settings)
            prov.attach(self._engines[name])
            state.providers[name] = prov
        return prov

    def _endpoint(self, provider_name: str) -> str:
        """The endpoint identity in this provider's cache keys: from its settings; a provider that must be
        built to tell is built once (none of the built-in ones)."""
        endpoint = self._endpoints.get(provider_name)
        if endpoint is None:
            endpoint = endpoint_for(provider_name, self.config.providers)
            if endpoint is None:
                endpoint = self.provider(provider_name).endpoint
            self._endpoints[provider_name] = endpoint
        return endpoint

    def samples_per_call(self, prov: Provider) -> int:
        return self._sample_limits.get(prov.concurrency_key, prov.max_samples_per_call)

    def learn_sample_limit(self, prov: Provider, got: int) -> None:
        """A call returned `got` < n samples: ask this endpoint for at most that many from now on."""
        if got < self.samples_per_call(prov):
            self._sample_limits[prov.concurrency_key] = got
            log.warning("%s at %s returns at most %d sample(s) per call: the rest are fetched in further calls "
                        "for this run (set max_samples_per_call: %d in its provider settings to say so up front)",
                        prov.name, prov.endpoint, got, got)

    def _semaphore(self, prov: Provider) -> PrioritySlots:
        state = self._loop_state()
        sem = state.semaphores.get(prov.concurrency_key)
        if sem is None:
            sem = state.semaphores[prov.concurrency_key] = PrioritySlots(prov.settings.max_concurrency)
        return sem

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        policy = self.config.retry
        if retry_after is not None:
            base = max(0.0, retry_after)  # the server said when; never come back sooner
        else:
            base = min(policy.max_delay_s, policy.base_delay_s * (2 ** (attempt - 1)))
        return base * (1.0 + self._jitter_rng.uniform(0.0, policy.jitter))

    async def _with_retries(self, prov: Provider, role: str, make_call):
        """Run `make_call()` in a slot, retrying retryable errors. Returns (result, attempts)."""
        policy = self.config.retry
        sem = self._semaphore(prov)
        started = time.monotonic()
        attempt = 0
        entries = books(self.usage, role)
        while True:
            attempt += 1
            for usage in entries:
                usage.attempts += 1
            try:
                await sem.acquire(priority_of(role))
                try:
                    return await make_call(), attempt
                finally:
                    sem.release()
            except ProviderError as exc:
                elapsed = time.monotonic() - started
                if not exc.retryable:
                    raise
                delay = self._backoff(attempt, exc.retry_after)
                if attempt >= policy.max_attempts or elapsed + delay > policy.max_total_s:
                    raise RetriesExhausted(exc, attempt, elapsed) from exc
                for usage in entries:
                    usage.retries += 1
                log.debug("retrying %s after %s (attempt %d, sleeping %.2fs)", prov.name, exc, attempt, delay)
                await asyncio.sleep(delay)

    # -- the path ---------------------------------------------------------------------------------
    async def serve(self, job: Job, t0: float) -> dict:
        """Every item's value: from the cache, an identical request in flight, another worker's claim or
        the provider, in that order; the request is accounted on usage and the call log."""
        state = self._loop_state()
        values: dict = {}
        if self.cache.reads:
            for item in job.items:
                record = job.read(self.cache, job.key(item))
                if record is not None:
                    values[item] = job.cached(item, record)
        hits = list(values)
        waits: dict = {}
        to_fetch: list = []
        for item in job.items:
            if item not in values:
                fut = state.pending.get(job.key(item))
                if fut is not None:
                    waits[item] = fut
                else:
                    to_fetch.append(item)
        entries = books(self.usage, job.role)
        for usage in entries:
            usage.requests += 1
        tally = Tally()
        remote: dict = {}
        try:
            if to_fetch:
                remote = await self._fetch(state, job, to_fetch, values, tally)
            for item, fut in waits.items():
                values[item] = await asyncio.shield(fut)  # the same key, so the same value
        except ProviderError as exc:
            for usage in entries:
                usage.errors += 1
            self.call_log.write(job.line(Outcome(len(job.items), len(hits), tally, t0, error=exc)))
            raise
        filtered = job.filtered([values[item] for item in to_fetch])
        booked = RoleUsage()  # accounted once (tokens saved, cost), then entered in every book
        self._account(booked, job, tally, hits=[values[item] for item in hits], shared=len(waits),
                      remote=len(remote), missed=len(to_fetch) - len(remote), filtered=filtered)
        for usage in entries:
            usage.add(booked)
        self.call_log.write(job.line(Outcome(len(job.items), len(hits), tally, t0, shared=len(waits),
                                             remote=len(remote), filtered=filtered)))
        return values

    async def _fetch(self, state: _LoopState, job: Job, items: list, values: dict, tally: Tally) -> dict:
        """Fetch `items` (announced in flight while fetched); returns {item: value} of those another worker paid."""
        futures = {}
        for item in items:
            fut = state.loop.create_future()
            # an error nobody else awaits must not be reported as "never retrieved"
            fut.add_done_callback(_consume_exception)
            futures[item] = state.pending[job.key(item)] = fut

        def deliver(item, value) -> None:
            values[item] = value
            futures[item].set_result(value)

        async def fetch(some: list) -> None:
            # the provider is built (its key looked up, its engine started) only now that something is fetched
            job.check(self)
            await job.fetch(self, self.provider(job.provider_name), some, deliver, tally)

        try:
            records = await fetch_claimed(self.cache, items, job.key, fetch, lambda key: job.read(self.cache, key),
                                          self.config.claim_ttl_s)
            remote = {item: job.cached(item, record) for item, record in records.items()}
            for item, value in remote.items():  # paid by another worker, read from the shared cache
                deliver(item, value)
            return remote
        except BaseException as exc:
            for fut in futures.values():
                if not fut.done():
                    fut.set_exception(exc)
            raise
        finally:
            for item in items:
                state.pending.pop(job.key(item), None)

    async def paid_call(self, prov: Provider, job: Job, invoke: Callable[[], Awaitable[Any]], *, asked: int,
                        least: int, key: str, where: dict, tally: Tally,
                        spend: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None) -> Any:
        """One provider call in a slot, with retries; a reply of fewer than `least` or more than `asked`
        items is malformed. The call is on the log once paid, before the job caches anything, so a kill
        cannot leave a cached item unlogged."""
        async def make_call():
            t_call = time.perf_counter()
            reply = await invoke()
            got = job.measure(reply).got
            if not least <= got <= asked:
                raise MalformedReply(f"asked for {asked} {job.noun}, got {got}", provider=prov.name,
                                     request_id=reply.request_id)
            return reply, t_call

        attempt = self._with_retries(prov, job.role, make_call)
        # the run's spending cap (llm/budget.py) sees the call before it starts and what it cost after
        (reply, t_call), tries = await (spend(attempt) if spend is not None else attempt)
        m = job.measure(reply)
        self.call_log.write({
            "t": round(time.time(), 3), "kind": "call", "op": job.op, "role": job.role, "model": job.model,
            "key": key, **where, "n": m.got, "calls": 1, "attempts": tries,
            "prompt_tokens": m.prompt_tokens, "completion_tokens": m.completion_tokens,
            "cost_usd": self.prices.cost(job.model, m.prompt_tokens, m.completion_tokens), "filtered": m.filtered,
            "latency_ms": round((time.perf_counter() - t_call) * 1000, 3)})
        tally.calls += 1
        tally.attempts += tries
        tally.prompt_tokens += m.prompt_tokens
        tally.completion_tokens += m.completion_tokens
        return reply

    def charge(self, usage: RoleUsage, model: str, calls: int, prompt_tokens: int, completion_tokens: int) -> None:
        """Book paid calls and their tokens on a role's usage: cost where the model is priced, else unpriced
        tokens."""
        cost = self.prices.cost(model, prompt_tokens, completion_tokens)
        usage.calls += calls
        usage.prompt_tokens += prompt_tokens
        usage.completion_tokens += completion_tokens
        if cost is None:
            usage.unpriced_tokens += prompt_tokens + completion_tokens
        else:
            usage.cost_usd += cost

    def _account(self, usage: RoleUsage, job: Job, tally: Tally, *, hits: list, shared: int, remote: int,
                 missed: int, filtered: int) -> None:
        usage.samples_hit += len(hits)
        usage.samples_shared += shared
        usage.samples_shared_remote += remote
        usage.samples_miss += missed
        usage.samples_filtered += filtered
        self.charge(usage, job.model, tally.calls, tally.prompt_tokens, tally.completion_tokens)
        saved = job.saved(hits)
        if saved is not None:
            usage.saved_prompt_tokens += saved[0]
            usage.saved_completion_tokens += saved[1]
            usage.saved_cost_usd += self.prices.cost(job.model, *saved) or 0.0


def _consume_exception(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()
