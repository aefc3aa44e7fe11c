"""A scriptable fake provider and a client on it, for the tests of the call path (tests/llm/test_client.py,
tests/llm/test_pipeline.py); its fixture `fake_provider` is in tests/llm/conftest.py."""

from __future__ import annotations

import asyncio

import numpy as np

from picaco.base.config import ClientConfig, ProviderSettings, RetryPolicy
from picaco.llm.client import LLMClient
from picaco.llm.providers.base import ChatReply, Completion, EmbedReply, Provider
from picaco.llm.request import ChatRequest


class FakeProvider(Provider):
    """Scriptable provider: counts calls, tracks concurrency, fails on demand."""

    script: list = []  # exceptions to raise on successive calls (None = succeed)
    calls: list = []
    embed_calls: list = []
    in_flight = 0
    max_in_flight = 0
    delay_s = 0.0
    reply_text = None  # callable(call, k) -> str

    def __init__(self, name, settings):
        super().__init__(name, settings)
        self.endpoint = settings.base_url or "fake://default"

    async def generate(self, call):
        cls = FakeProvider
        cls.calls.append(call)
        cls.in_flight += 1
        cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        try:
            if cls.delay_s:
                await asyncio.sleep(cls.delay_s)
            if cls.script:
                exc = cls.script.pop(0)
                if exc is not None:
                    raise exc
            texts = [(cls.reply_text or (lambda c, k: f"answer seed={c.seed} k={k}"))(call, k) for k in range(call.n)]
            return ChatReply([Completion(t, "stop") for t in texts], prompt_tokens=10, completion_tokens=5 * call.n,
                             request_id="req-1")
        finally:
            cls.in_flight -= 1

    async def embed(self, model, texts):
        FakeProvider.embed_calls.append(list(texts))
        return EmbedReply(np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32), tokens=len(texts))


def make_client(tmp_path, **kw) -> LLMClient:
    providers = kw.pop("providers", {"fake": ProviderSettings(kind="fake", max_concurrency=kw.pop("slots", 64))})
    retry = kw.pop("retry", RetryPolicy(base_delay_s=0.001, max_delay_s=0.01))
    return LLMClient(ClientConfig(cache_dir=tmp_path / "cache", providers=providers, retry=retry,
                                  call_log_path=tmp_path / "calls.jsonl", **kw))


def req(user="hi", **params) -> ChatRequest:
    params.setdefault("seed", 7)
    return ChatRequest.of("fake/m", "sys", user, role="target", **params)
