"""The one road for every LLM and embedding call.

    cache lookup -> in-flight de-duplication -> a slot on the endpoint -> retries -> provider

All cross-cutting work lives here, once, for every provider: the content-addressed cache (sample by sample
for chat, text by text for embeddings), identical in-flight requests shared, a concurrency limit per endpoint,
retries with backoff and jitter that honour Retry-After (bounded by count and by total time), the run's spending
cap (llm/budget.py), usage and cost by role, a per-run call log. Nothing above knows what answered a call.

Cached samples never take a slot: the lookup happens before the semaphore. And a cached answer needs
no provider at all: the cache key's endpoint identity comes from the settings (`Provider.endpoint_for`),
so the provider, its SDK client and its API key are only looked up when something must be fetched; a
shared cache replays without credentials.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from picaco.base.config import ClientConfig
from picaco.llm.budget import Budget
from picaco.llm.cache import CacheBackend, encode_embedding, encode_sample, open_cache
from picaco.llm.calllog import CallLog
from picaco.llm.claims import fetch_claimed
from picaco.llm.errors import ContentFiltered, MalformedReply, ProviderError, RetriesExhausted
from picaco.llm.pricing import PriceTable
from picaco.llm.providers import endpoint_for, endpoint_identity, make_provider
from picaco.llm.providers.base import ChatCall, ChatReply, Completion, Provider
from picaco.llm.request import (ChatRequest, ChatResponse, Sample, Usage, embedding_key, keys_from_prefix,
                                split_model)
from picaco.llm.usage import RoleUsage, contiguous_runs as _contiguous_runs, split_evenly as _split_evenly

log = logging.getLogger(__name__)


@dataclass
class _LoopState:
    """Everything bound to one event loop: futures, semaphores and SDK clients (their connection pools)."""

    loop: asyncio.AbstractEventLoop
    providers: dict[str, Provider] = field(default_factory=dict)
    semaphores: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    pending: dict[str, asyncio.Future] = field(default_factory=dict)


class LLMClient:
    """Use as `async with LLMClient(cfg) as client:`; one client per run is the intended shape."""

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
        self._engines: dict[str, object] = {}  # provider name -> the engine its calls need (or None); see aclose
        self._engines_lock = threading.Lock()
        self._closed = False

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

    def endpoint_of(self, model: str) -> str:
        """The endpoint identity that enters this model's cache keys (needs no event loop, and no key
        for the built-in providers)."""
        provider_name, _ = split_model(model)
        endpoint = self._endpoints.get(provider_name)
        if endpoint is None:
            endpoint = self._endpoints[provider_name] = endpoint_identity(provider_name, self.config.providers)
        return endpoint

    def _endpoint(self, provider_name: str) -> str:
        """Like endpoint_of, inside the event loop: a provider that must be built to tell is built once."""
        endpoint = self._endpoints.get(provider_name)
        if endpoint is None:
            endpoint = endpoint_for(provider_name, self.config.providers)
            if endpoint is None:
                endpoint = self.provider(provider_name).endpoint
            self._endpoints[provider_name] = endpoint
        return endpoint

    def _semaphore(self, prov: Provider) -> asyncio.Semaphore:
        state = self._loop_state()
        sem = state.semaphores.get(prov.concurrency_key)
        if sem is None:
            sem = state.semaphores[prov.concurrency_key] = asyncio.Semaphore(prov.settings.max_concurrency)
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
        usage = self.usage[role]
        while True:
            attempt += 1
            usage.attempts += 1
            try:
                async with sem:
                    return await make_call(), attempt
            except ProviderError as exc:
                elapsed = time.monotonic() - started
                if not exc.retryable:
                    raise
                delay = self._backoff(attempt, exc.retry_after)
                if attempt >= policy.max_attempts or elapsed + delay > policy.max_total_s:
                    raise RetriesExhausted(exc, attempt, elapsed) from exc
                usage.retries += 1
                log.debug("retrying %s after %s (attempt %d, sleeping %.2fs)", prov.name, exc, attempt, delay)
                await asyncio.sleep(delay)

    # -- chat -------------------------------------------------------------------------------------
    async def chat(self, request: ChatRequest, n: int = 1, start: int = 0, *,
                   filtered: Literal["raise", "missing"] = "raise") -> ChatResponse:
        """Samples `start .. start+n-1` of `request`. Sample i is the same cache entry in every call.

        A call whose every sample a content filter refused raises `ContentFiltered` by default; with
        `filtered="missing"` its samples come back empty with finish_reason "content_filter" (see
        `Sample.filtered`), like the refused samples of a partly filtered call: the caller counts them as
        missing. Filtered samples are never cached and never filled in."""
        if n < 1 or start < 0:
            raise ValueError(f"chat needs n >= 1 and start >= 0, got n={n}, start={start}")
        if filtered not in ("raise", "missing"):
            raise ValueError(f"filtered must be 'raise' or 'missing', got {filtered!r}")
        t0 = time.perf_counter()
        provider_name, model_name = split_model(request.model)
        state = self._loop_state()
        prefix = request.key_prefix(self._endpoint(provider_name))
        keys = keys_from_prefix(prefix, start, n)
        results: list[Sample | None] = [None] * n
        cache = self.cache
        if cache.reads:
            for j, key in enumerate(keys):
                rec = cache.get_sample(key)
                if rec is not None:
                    results[j] = Sample(text=rec["text"], index=start + j, finish_reason=rec.get("finish_reason"),
                                        usage=Usage(**rec.get("usage", {})), cached=True)
        hits = [j for j in range(n) if results[j] is not None]
        waits: dict[int, asyncio.Future] = {}
        to_fetch: list[int] = []
        for j in range(n):
            if results[j] is None:
                fut = state.pending.get(keys[j])
                if fut is not None:
                    waits[j] = fut
                else:
                    to_fetch.append(j)
        usage = self.usage[request.role]
        usage.requests += 1
        calls = attempts = 0
        fresh_prompt = fresh_completion = 0
        remote: dict = {}
        try:
            if to_fetch:
                futures = {}
                for j in to_fetch:
                    fut = state.loop.create_future()
                    # an error nobody else awaits must not be reported as "never retrieved"
                    fut.add_done_callback(_consume_exception)
                    futures[j] = state.pending[keys[j]] = fut

                async def fetch(js: list[int]) -> None:
                    nonlocal calls, attempts, fresh_prompt, fresh_completion
                    prov = self.provider(provider_name)  # built (key looked up) only when something is fetched
                    for run in _contiguous_runs(js):
                        done = 0
                        while done < len(run):  # a call may return fewer samples than asked: ask for the rest
                            part = run[done:done + self._samples_per_call(prov)]
                            samples, tries, reply_prompt, reply_completion = await self._fetch_call(
                                prov, request, model_name, start, part, keys, prefix.hexdigest(),
                                filtered == "missing")
                            calls += 1
                            attempts += tries
                            fresh_prompt += reply_prompt
                            fresh_completion += reply_completion
                            for j, sample in zip(part, samples):
                                results[j] = sample
                                futures[j].set_result(sample)
                            done += len(samples)

                try:
                    remote = await fetch_claimed(cache, to_fetch, keys.__getitem__, fetch, cache.get_sample,
                                                 self.config.claim_ttl_s)
                    for j, rec in remote.items():  # paid by another worker, read from the shared cache
                        results[j] = Sample(text=rec["text"], index=start + j, finish_reason=rec.get("finish_reason"),
                                            usage=Usage(**rec.get("usage", {})), cached=True)
                        futures[j].set_result(results[j])
                except BaseException as exc:
                    for fut in futures.values():
                        if not fut.done():
                            fut.set_exception(exc)
                    raise
                finally:
                    for j in to_fetch:
                        state.pending.pop(keys[j], None)
            for j, fut in waits.items():
                results[j] = await asyncio.shield(fut)  # same key, so same sample index
        except ProviderError as exc:
            usage.errors += 1
            self._log_chat(request, keys, n, start, len(hits), calls, attempts, t0, error=exc)
            raise

        cost = self.prices.cost(request.model, fresh_prompt, fresh_completion)
        n_filtered = sum(1 for j in to_fetch if results[j].filtered)
        usage.calls += calls
        usage.samples_hit += len(hits)
        usage.samples_shared += len(waits)
        usage.samples_shared_remote += len(remote)
        usage.samples_miss += len(to_fetch) - len(remote)
        usage.samples_filtered += n_filtered
        usage.prompt_tokens += fresh_prompt
        usage.completion_tokens += fresh_completion
        if cost is None:
            usage.unpriced_tokens += fresh_prompt + fresh_completion
        else:
            usage.cost_usd += cost
        if hits:
            saved_p = sum(results[j].usage.prompt_tokens for j in hits)
            saved_c = sum(results[j].usage.completion_tokens for j in hits)
            usage.saved_prompt_tokens += saved_p
            usage.saved_completion_tokens += saved_c
            usage.saved_cost_usd += self.prices.cost(request.model, saved_p, saved_c) or 0.0
        self._log_chat(request, keys, n, start, len(hits), calls, attempts, t0, shared=len(waits),
                       filtered=n_filtered, shared_remote=len(remote))
        return ChatResponse(model=request.model, role=request.role, samples=tuple(results))

    def _samples_per_call(self, prov: Provider) -> int:
        return self._sample_limits.get(prov.concurrency_key, prov.max_samples_per_call)

    def _learn_sample_limit(self, prov: Provider, got: int) -> None:
        """A call returned `got` < n samples: ask this endpoint for at most that many from now on."""
        if got < self._samples_per_call(prov):
            self._sample_limits[prov.concurrency_key] = got
            log.warning("%s at %s returns at most %d sample(s) per call: the rest are fetched in further calls "
                        "for this run (set max_samples_per_call: %d in its provider settings to say so up front)",
                        prov.name, prov.endpoint, got, got)

    async def _fetch_call(self, prov: Provider, request: ChatRequest, model_name: str, start: int,
                          run: list[int], keys: list[str], request_id: str, keep_filtered: bool):
        """One provider call for the contiguous samples `run`; it may return only the first k of them
        (k >= 1), each drawn with seed + its index as if all had come."""
        first = start + run[0]
        seed = request.params.seed
        call = ChatCall(model=model_name, messages=request.messages, params=request.params, n=len(run),
                        seed=None if seed is None else seed + first, first_index=first)

        async def make_call():
            t_call = time.perf_counter()
            try:
                reply = await prov.generate(call)
            except ContentFiltered as exc:
                if not keep_filtered:
                    raise
                # the provider answered, refusing every sample: they are missing, not an error
                reply = ChatReply([Completion("", "content_filter")] * call.n, request_id=exc.request_id)
            if not 0 < len(reply.completions) <= call.n:
                raise MalformedReply(f"asked for {call.n} samples, got {len(reply.completions)}",
                                     provider=prov.name, request_id=reply.request_id)
            return reply, t_call

        (reply, t_call), tries = await self.budget.chat(request, call.n, self._with_retries(prov, request.role, make_call))
        got = len(reply.completions)
        if got < call.n:
            self._learn_sample_limit(prov, got)
        # paid: on the log before anything is cached, so a kill cannot leave a cached sample unlogged
        self.call_log.write({
            "t": round(time.time(), 3), "kind": "call", "op": "chat", "role": request.role, "model": request.model,
            "key": keys[run[0]], "request": request_id, "first": first, "n": got, "calls": 1, "attempts": tries,
            "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "cost_usd": self.prices.cost(request.model, reply.prompt_tokens, reply.completion_tokens),
            "filtered": sum(1 for c in reply.completions if c.finish_reason == "content_filter"),
            "latency_ms": round((time.perf_counter() - t_call) * 1000, 3)})
        per_sample = _split_evenly(reply.completion_tokens, got)
        samples, rows = [], []
        for k, (j, completion) in enumerate(zip(run, reply.completions)):
            # the prompt is billed once per call; book it on the call's first sample
            usage = Usage(prompt_tokens=reply.prompt_tokens if k == 0 else 0, completion_tokens=per_sample[k])
            sample = Sample(text=completion.text, index=start + j, finish_reason=completion.finish_reason,
                            usage=usage, cached=False)
            samples.append(sample)
            if completion.text.strip() and completion.finish_reason != "content_filter":
                rows.append((keys[j], encode_sample({"text": completion.text, "finish_reason": completion.finish_reason,
                                                     "usage": {"prompt_tokens": usage.prompt_tokens,
                                                               "completion_tokens": usage.completion_tokens}})))
        await self.cache.write_rows(rows)
        return samples, tries, reply.prompt_tokens, reply.completion_tokens

    def _log_chat(self, request, keys, n, start, hits, calls, attempts, t0, error: Exception | None = None,
                  shared: int = 0, filtered: int = 0, shared_remote: int = 0) -> None:
        """The request's line; what it paid is on its call lines (picaco/llm/calllog.py)."""
        self.call_log.write({
            "t": round(time.time(), 3), "kind": "chat", "role": request.role, "model": request.model,
            "key": keys[0], "start": start, "n": n, "hits": hits, "shared": shared, "shared_remote": shared_remote,
            "misses": n - hits - shared - shared_remote, "filtered": filtered,
            "status": "error" if error else ("hit" if hits == n else ("miss" if hits == 0 else "partial")),
            "provider_calls": calls, "retries": max(0, attempts - calls),
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
            **({"error": type(error).__name__, "error_status": getattr(error, "status", None)} if error else {}),
        })

    # -- embeddings -------------------------------------------------------------------------------
    async def embed(self, model: str, texts: Sequence[str], role: str = "embedding") -> np.ndarray:
        """float32 array (len(texts), dim), cached per (model, text)."""
        t0 = time.perf_counter()
        provider_name, model_name = split_model(model)
        state = self._loop_state()
        unique = list(dict.fromkeys(texts))
        endpoint = self._endpoint(provider_name)
        keys = {t: embedding_key(provider_name, model_name, endpoint, t) for t in unique}
        vectors: dict[str, np.ndarray] = {}
        if self.cache.reads:
            for t in unique:
                v = self.cache.get_embedding(keys[t])
                if v is not None:
                    vectors[t] = v
        hits = len(vectors)
        waits, to_fetch = {}, []
        for t in unique:
            if t not in vectors:
                fut = state.pending.get(keys[t])
                if fut is not None:
                    waits[t] = fut
                else:
                    to_fetch.append(t)
        usage = self.usage[role]
        usage.requests += 1
        calls = attempts = tokens = 0
        remote: dict = {}
        try:
            if to_fetch:
                futures = {}
                for t in to_fetch:
                    fut = state.loop.create_future()
                    fut.add_done_callback(_consume_exception)
                    futures[t] = state.pending[keys[t]] = fut

                async def fetch(batch_texts: list[str]) -> None:
                    nonlocal calls, attempts, tokens
                    prov = self.provider(provider_name)  # built (key looked up) only when something is fetched
                    size = max(1, prov.embed_batch_size())
                    for i in range(0, len(batch_texts), size):
                        batch = batch_texts[i:i + size]

                        async def make_call(batch=batch):
                            t_call = time.perf_counter()
                            reply = await prov.embed(model_name, batch)
                            if reply.vectors.shape[0] != len(batch):
                                raise MalformedReply(f"asked for {len(batch)} embeddings, got {reply.vectors.shape[0]}",
                                                     provider=prov.name, request_id=reply.request_id)
                            return reply, t_call

                        (reply, t_call), tries = await self.budget.embed(model, batch, self._with_retries(prov, role, make_call))
                        self.call_log.write({
                            "t": round(time.time(), 3), "kind": "call", "op": "embed", "role": role, "model": model,
                            "key": keys[batch[0]], "n": len(batch), "calls": 1, "attempts": tries,
                            "prompt_tokens": reply.tokens, "completion_tokens": 0,
                            "cost_usd": self.prices.cost(model, reply.tokens, 0), "filtered": 0,
                            "latency_ms": round((time.perf_counter() - t_call) * 1000, 3)})
                        calls += 1
                        attempts += tries
                        tokens += reply.tokens
                        matrix = np.asarray(reply.vectors, dtype=np.float32)
                        await self.cache.write_rows([(keys[t], encode_embedding(vec)) for t, vec in zip(batch, matrix)])
                        for t, vec in zip(batch, matrix):
                            vectors[t] = vec
                            futures[t].set_result(vec)

                try:
                    remote = await fetch_claimed(self.cache, to_fetch, keys.__getitem__, fetch,
                                                 self.cache.get_embedding, self.config.claim_ttl_s)
                    for t, vec in remote.items():  # paid by another worker, read from the shared cache
                        vectors[t] = vec
                        futures[t].set_result(vec)
                except BaseException as exc:
                    for fut in futures.values():
                        if not fut.done():
                            fut.set_exception(exc)
                    raise
                finally:
                    for t in to_fetch:
                        state.pending.pop(keys[t], None)
            for t, fut in waits.items():
                vectors[t] = await asyncio.shield(fut)
        except ProviderError as exc:
            usage.errors += 1
            self._log_embed(model, role, len(unique), hits, calls, attempts, t0, error=exc)
            raise
        cost = self.prices.cost(model, tokens, 0)
        usage.calls += calls
        usage.samples_hit += hits
        usage.samples_shared += len(waits)
        usage.samples_shared_remote += len(remote)
        usage.samples_miss += len(to_fetch) - len(remote)
        usage.prompt_tokens += tokens
        if cost is None:
            usage.unpriced_tokens += tokens
        else:
            usage.cost_usd += cost
        self._log_embed(model, role, len(unique), hits, calls, attempts, t0, shared_remote=len(remote))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vectors[t] for t in texts])

    def _log_embed(self, model, role, n, hits, calls, attempts, t0, error=None, shared_remote: int = 0) -> None:
        self.call_log.write({
            "t": round(time.time(), 3), "kind": "embed", "role": role, "model": model, "n": n,
            "hits": hits, "shared_remote": shared_remote, "misses": n - hits - shared_remote,
            "status": "error" if error else ("hit" if hits == n else ("miss" if hits == 0 else "partial")),
            "provider_calls": calls, "retries": max(0, attempts - calls),
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
            **({"error": type(error).__name__} if error else {}),
        })

    # -- reporting and shutdown -------------------------------------------------------------------
    def usage_by_role(self) -> dict[str, dict]:
        return {role: u.as_dict() for role, u in sorted(self.usage.items())}

    def _flush_stats(self) -> None:
        for role, u in self.usage.items():
            self.cache.add_stats(role, hits=u.samples_hit + u.samples_shared_remote, misses=u.samples_miss,
                                 saved_prompt_tokens=u.saved_prompt_tokens,
                                 saved_completion_tokens=u.saved_completion_tokens,
                                 saved_cost_microusd=round(u.saved_cost_usd * 1e6))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._state is not None:
            for prov in self._state.providers.values():
                await prov.aclose()
        failures = []
        for engine in self._engines.values():  # every one is stopped, even after one fails to stop
            if engine is not None:
                try:
                    engine.stop()
                except ProviderError as exc:
                    failures.append(exc)
        self._engines.clear()
        self._flush_stats()
        self.call_log.close()
        if self._owns_cache:
            self.cache.close()
        if failures:
            raise failures[0]

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def _consume_exception(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()
