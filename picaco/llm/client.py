"""The one road for every LLM and embedding call.

    cache lookup -> in-flight de-duplication -> claims -> a slot on the endpoint -> retries -> provider

All cross-cutting work lives on that one path (picaco/llm/pipeline.py), once, for every provider and for
chat, embeddings and exact-p_e echoes alike (picaco/llm/jobs.py says what differs): the content-addressed cache (sample by
sample for chat, text by text for embeddings), identical in-flight requests shared, a concurrency limit
per endpoint, retries with exponential backoff and jitter that honour Retry-After (bounded by count and
by total time), token usage and cost by role, and a per-run call log. Nothing above this module knows
whether an answer came from the cache, the simulator or a paid API.

Cached samples never take a slot: the lookup happens before the semaphore. And a cached answer needs
no provider at all: the cache key's endpoint identity comes from the settings (`Provider.endpoint_for`),
so the provider, its SDK client and its API key are only looked up when something must be fetched; a
shared cache replays without credentials.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np

from picaco.base.config import ClientConfig
from picaco.llm.cache import CacheBackend
from picaco.llm.errors import ProviderError
from picaco.llm.jobs import ChatJob, EmbedJob, ScoreJob
from picaco.llm.logprobs import EchoedPrompt
from picaco.llm.pipeline import CallPath
from picaco.llm.providers import endpoint_identity
from picaco.llm.request import ChatRequest, ChatResponse, split_model


class LLMClient(CallPath):
    """Use as `async with LLMClient(cfg) as client:`; one client per run is the intended shape."""

    def __init__(self, config: ClientConfig | None = None, *, cache: CacheBackend | None = None) -> None:
        super().__init__(config, cache=cache)
        self._closed = False

    def endpoint_of(self, model: str) -> str:
        """The endpoint identity that enters this model's cache keys (needs no event loop, and no key
        for the built-in providers)."""
        provider_name, _ = split_model(model)
        endpoint = self._endpoints.get(provider_name)
        if endpoint is None:
            endpoint = self._endpoints[provider_name] = endpoint_identity(provider_name, self.config.providers)
        return endpoint

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
        job = ChatJob(request, start, n, keep_filtered=filtered == "missing", endpoint_of=self._endpoint)
        samples = await self.serve(job, t0)
        return ChatResponse(model=request.model, role=request.role, samples=tuple(samples[j] for j in range(n)))

    async def embed(self, model: str, texts: Sequence[str], role: str = "embedding") -> np.ndarray:
        """float32 array (len(texts), dim), cached per (model, text)."""
        t0 = time.perf_counter()
        vectors = await self.serve(EmbedJob(model, role, texts, endpoint_of=self._endpoint), t0)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vectors[t] for t in texts])

    async def echo(self, model: str, prompt: str, *, role: str = "target",
                   key_extra: tuple[tuple[str, str], ...] = ()) -> EchoedPrompt:
        """The engine's tokens and log-probs of the text `prompt` (exact p_e, picaco/llm/logprobs.py),
        cached per text."""
        t0 = time.perf_counter()
        job = ScoreJob(model, prompt, role=role, key_extra=key_extra, endpoint_of=self._endpoint)
        return (await self.serve(job, t0))[prompt]

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

