"""Stand-ins for providers. `FakeProvider`, a scriptable chat and embeddings provider, and a client on it,
for the tests of the call path (tests/llm/test_client.py, tests/llm/test_pipeline.py; its fixture
`fake_provider` is in tests/llm/conftest.py). `EchoingEngine`, an engine that echoes prompt log-probs, for
exact p_e without the real engine (tests/llm/test_jobs.py, tests/method/test_exact_pe.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading

import numpy as np

from picaco.base.config import ClientConfig, ProviderSettings, RetryPolicy
from picaco.llm.client import LLMClient
from picaco.llm.providers import PROVIDER_KINDS, register_kind
from picaco.llm.providers.base import ChatReply, Completion, EmbedReply, Provider
from picaco.llm.providers.openai import OpenAIProvider
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


ECHO_ENDPOINT = "http://127.0.0.1:9/v1"  # never reached: the stand-in answers in-process


class EchoingEngine(OpenAIProvider):
    """/completions with echo: the prompt's words and spaces as tokens, each word -0.5 per character, then
    one generated token. Counts the echo calls it answers (all clients together)."""

    lock = threading.Lock()  # the clients of the claims test run in two threads
    calls: list[str] = []
    fail_next = 0  # replies to spoil (a malformed body), to see the retries
    latency_s = 0.05  # long enough for a second identical request to find this one in flight

    def _client(self):

        class Client:
            async def post(self, path, body, cast_to, options):
                assert path == "/completions" and body["echo"] is True and body["max_tokens"] == 1
                await asyncio.sleep(EchoingEngine.latency_s)
                with EchoingEngine.lock:
                    spoil = EchoingEngine.fail_next > 0
                    EchoingEngine.fail_next -= spoil
                    if not spoil:
                        EchoingEngine.calls.append(body["prompt"])
                if spoil:
                    return {"id": "bad", "choices": []}
                tokens = re.findall(r"\S+|\s+", body["prompt"]) + ["!"]
                offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
                logprobs = [None] + [-0.5 * len(t.strip() or " ") for t in tokens[1:]]
                return {"id": f"cmpl-{len(EchoingEngine.calls)}", "choices": [{"logprobs": {
                    "tokens": tokens, "text_offset": offsets, "token_logprobs": logprobs}}],
                    "usage": {"prompt_tokens": len(tokens) - 1, "completion_tokens": 1}}
        return Client()


def echoing_settings(template_dir) -> ProviderSettings:
    """Settings of an EchoingEngine provider (register the kind "echoing" first) with a Jinja chat template
    that puts a response verbatim after the generation prompt; the file is written to `template_dir`."""
    path = template_dir / "echoing.jinja"
    path.write_text("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                    "{% if add_generation_prompt %}assistant: {% endif %}")
    return ProviderSettings(kind="echoing", base_url=ECHO_ENDPOINT,
                            options={"prompt_logprobs": True, "chat_template": str(path)})


@contextlib.contextmanager
def echoing_engine_registered():
    """The provider kind "echoing" is the stand-in engine, its counts reset, while inside."""
    register_kind("echoing", EchoingEngine)
    EchoingEngine.calls, EchoingEngine.fail_next, EchoingEngine.latency_s = [], 0, 0.05
    try:
        yield EchoingEngine
    finally:
        PROVIDER_KINDS.pop("echoing", None)
