"""The three kinds of request on the one path (picaco/llm/pipeline.py): what differs between them.

- `ChatJob`: items are the sample positions of a request; sample i is cached under the request's key
  prefix and its index (picaco/llm/request.py), drawn with seed + i in calls of contiguous samples (an
  endpoint may return fewer per call than asked: the rest are asked for again). Empty and refused
  samples are returned but never cached.
- `EmbedJob`: items are the distinct texts, each cached per (provider, model, endpoint, text), fetched
  in the provider's batch size.
- `ScoreJob`: one item, a rendered prompt text, echoed with its tokens' log-probs (exact p_e;
  picaco/llm/logprobs.py), cached per (provider, model, endpoint, text, key extra) in the sample cache.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from picaco.base.errors import ConfigError
from picaco.llm.cache import CacheBackend, encode_embedding, encode_sample
from picaco.llm.errors import ContentFiltered
from picaco.llm.logprobs import EchoedPrompt, chat_template_for, echo_key, echo_record, echoed_from_record, fetch_echo
from picaco.llm.pipeline import CallPath, Job, Measure, Outcome, Tally
from picaco.llm.providers.base import ChatCall, ChatReply, Completion, EmbedReply, Provider
from picaco.llm.providers.openai import OpenAIProvider
from picaco.llm.request import ChatRequest, Sample, Usage, embedding_key, keys_from_prefix, split_model
from picaco.llm.usage import contiguous_runs, split_evenly


class ChatJob(Job):
    op = "chat"
    noun = "samples"

    def __init__(self, request: ChatRequest, start: int, n: int, *, keep_filtered: bool,
                 endpoint_of: Callable[[str], str]) -> None:
        self.request, self.start, self.keep_filtered = request, start, keep_filtered
        self.role, self.model = request.role, request.model
        self.provider_name, self.model_name = split_model(request.model)
        self.prefix = request.key_prefix(endpoint_of(self.provider_name))
        self.keys = keys_from_prefix(self.prefix, start, n)
        self.items = list(range(n))

    def key(self, j: int) -> str:
        return self.keys[j]

    def read(self, cache: CacheBackend, key: str) -> dict | None:
        return cache.get_sample(key)

    def cached(self, j: int, record: dict) -> Sample:
        return Sample(text=record["text"], index=self.start + j, finish_reason=record.get("finish_reason"),
                      usage=Usage(**record.get("usage", {})), cached=True)

    async def fetch(self, path: CallPath, prov: Provider, js: list[int], deliver, tally: Tally) -> None:
        for run in contiguous_runs(js):
            done = 0
            while done < len(run):  # a call may return fewer samples than asked: ask for the rest
                part = run[done:done + path.samples_per_call(prov)]
                samples = await self._call(path, prov, part, tally)
                for j, sample in zip(part, samples):
                    deliver(j, sample)
                done += len(samples)

    async def _call(self, path: CallPath, prov: Provider, part: list[int], tally: Tally) -> list[Sample]:
        """One provider call for the contiguous samples `part`; it may return only the first k of them
        (k >= 1), each drawn with seed + its index as if all had come."""
        first = self.start + part[0]
        seed = self.request.params.seed
        call = ChatCall(model=self.model_name, messages=self.request.messages, params=self.request.params,
                        n=len(part), seed=None if seed is None else seed + first, first_index=first)

        async def invoke() -> ChatReply:
            try:
                return await prov.generate(call)
            except ContentFiltered as exc:
                if not self.keep_filtered:
                    raise
                # the provider answered, refusing every sample: they are missing, not an error
                return ChatReply([Completion("", "content_filter")] * call.n, request_id=exc.request_id)

        reply = await path.paid_call(prov, self, invoke, asked=call.n, least=1, key=self.keys[part[0]],
                                     where={"request": self.prefix.hexdigest(), "first": first}, tally=tally,
                                     spend=lambda attempt: path.budget.chat(self.request, call.n, attempt))
        got = len(reply.completions)
        if got < call.n:
            path.learn_sample_limit(prov, got)
        per_sample = split_evenly(reply.completion_tokens, got)
        samples, rows = [], []
        for k, (j, completion) in enumerate(zip(part, reply.completions)):
            # the prompt is billed once per call; book it on the call's first sample
            usage = Usage(prompt_tokens=reply.prompt_tokens if k == 0 else 0, completion_tokens=per_sample[k])
            samples.append(Sample(text=completion.text, index=self.start + j, finish_reason=completion.finish_reason,
                                  usage=usage, cached=False))
            if completion.text.strip() and completion.finish_reason != "content_filter":
                rows.append((self.keys[j], encode_sample({"text": completion.text, "finish_reason": completion.finish_reason,
                                                          "usage": {"prompt_tokens": usage.prompt_tokens,
                                                                    "completion_tokens": usage.completion_tokens}})))
        await path.cache.write_rows(rows)
        return samples

    def measure(self, reply: ChatReply) -> Measure:
        return Measure(len(reply.completions), reply.prompt_tokens, reply.completion_tokens,
                       sum(1 for c in reply.completions if c.finish_reason == "content_filter"))

    def filtered(self, fetched: list[Sample]) -> int:
        return sum(1 for s in fetched if s.filtered)

    def saved(self, hits: list[Sample]) -> tuple[int, int] | None:
        if not hits:
            return None
        return sum(s.usage.prompt_tokens for s in hits), sum(s.usage.completion_tokens for s in hits)

    def line(self, o: Outcome) -> dict:
        return {"t": round(time.time(), 3), "kind": "chat", "role": self.role, "model": self.model,
                "key": self.keys[0], "start": self.start, "n": o.n, "hits": o.hits, "shared": o.shared,
                "shared_remote": o.remote, "misses": o.n - o.hits - o.shared - o.remote, "filtered": o.filtered,
                **o.summary(),
                **({"error": type(o.error).__name__, "error_status": getattr(o.error, "status", None)} if o.error else {})}


class EmbedJob(Job):
    op = "embed"
    noun = "embeddings"

    def __init__(self, model: str, role: str, texts, *, endpoint_of: Callable[[str], str]) -> None:
        self.model, self.role = model, role
        self.provider_name, self.model_name = split_model(model)
        self.items = list(dict.fromkeys(texts))
        endpoint = endpoint_of(self.provider_name)
        self.keys = {t: embedding_key(self.provider_name, self.model_name, endpoint, t) for t in self.items}

    def key(self, text: str) -> str:
        return self.keys[text]

    def read(self, cache: CacheBackend, key: str) -> np.ndarray | None:
        return cache.get_embedding(key)

    async def fetch(self, path: CallPath, prov: Provider, texts: list[str], deliver, tally: Tally) -> None:
        size = max(1, prov.embed_batch_size())
        for i in range(0, len(texts), size):
            batch = texts[i:i + size]
            def embed_call(batch: list[str] = batch) -> Awaitable[EmbedReply]:
                return prov.embed(self.model_name, batch)

            def spend(attempt: Awaitable[Any], batch: list[str] = batch) -> Awaitable[Any]:
                return path.budget.embed(self.model, batch, attempt)

            reply = await path.paid_call(prov, self, embed_call, asked=len(batch), least=len(batch),
                                         key=self.keys[batch[0]], where={}, tally=tally, spend=spend)
            matrix = np.asarray(reply.vectors, dtype=np.float32)
            await path.cache.write_rows([(self.keys[t], encode_embedding(vec)) for t, vec in zip(batch, matrix)])
            for t, vec in zip(batch, matrix):
                deliver(t, vec)

    def measure(self, reply: EmbedReply) -> Measure:
        return Measure(reply.vectors.shape[0], reply.tokens)

    def line(self, o: Outcome) -> dict:
        return {"t": round(time.time(), 3), "kind": "embed", "role": self.role, "model": self.model, "n": o.n,
                "hits": o.hits, "shared_remote": o.remote, "misses": o.n - o.hits - o.remote, **o.summary(),
                **({"error": type(o.error).__name__} if o.error else {})}


class ScoreJob(Job):
    op = "score"
    noun = "echoed prompts"

    def __init__(self, model: str, prompt: str, *, role: str, key_extra: tuple[tuple[str, str], ...],
                 endpoint_of: Callable[[str], str]) -> None:
        self.model, self.role = model, role
        self.provider_name, self.model_name = split_model(model)
        self.items = [prompt]
        self._key = echo_key(model, endpoint_of(self.provider_name), prompt, key_extra)

    def key(self, prompt: str) -> str:
        return self._key

    def read(self, cache: CacheBackend, key: str) -> EchoedPrompt | None:
        record = cache.get_sample(key)
        return None if record is None else echoed_from_record(record)

    def check(self, path: CallPath) -> None:
        chat_template_for(self.provider_name, path.config.providers)  # one clear line for a provider that cannot

    async def fetch(self, path: CallPath, prov: Provider, prompts: list[str], deliver, tally: Tally) -> None:
        if not isinstance(prov, OpenAIProvider):  # chat_template_for admits only these: a bug if reached
            raise ConfigError(f"provider {prov.name!r} cannot echo prompt log-probs")
        for prompt in prompts:
            def echo_call(prompt: str = prompt) -> Awaitable[EchoedPrompt]:
                return fetch_echo(prov, self.model_name, prompt)

            def spend(attempt: Awaitable[Any], prompt: str = prompt) -> Awaitable[Any]:
                return path.budget.score(self.model, prompt, attempt)

            echoed = await path.paid_call(prov, self, echo_call, asked=1, least=1, key=self._key, where={},
                                          tally=tally, spend=spend)
            await path.cache.write_rows([(self._key, encode_sample(echo_record(echoed)))])
            deliver(prompt, echoed)

    def measure(self, reply: EchoedPrompt) -> Measure:
        return Measure(1, reply.prompt_tokens, reply.generated)

    def saved(self, hits: list[EchoedPrompt]) -> tuple[int, int] | None:
        # the prompt is what an echo pays for; its one generated token is never used
        return (sum(e.prompt_tokens for e in hits), 0) if hits else None

    def line(self, o: Outcome) -> dict:
        return {"t": round(time.time(), 3), "kind": "score", "role": self.role, "model": self.model,
                "key": self._key, "n": o.n, "hits": o.hits, "shared": o.shared, "shared_remote": o.remote,
                "misses": o.n - o.hits - o.shared - o.remote, **o.summary(),
                **({"error": type(o.error).__name__} if o.error else {})}
