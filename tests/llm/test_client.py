"""The one road: cache per sample, de-duplication, slots, retries, usage, call log."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from picaco.base.config import ClientConfig, ProviderSettings, RetryPolicy
from picaco.base.errors import ConfigError
from picaco.llm.client import LLMClient
from picaco.llm.errors import AuthError, ContentFiltered, RateLimited, RetriesExhausted, TransientError
from picaco.llm.providers import PROVIDER_KINDS, register_kind
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


@pytest.fixture(autouse=True)
def fake_provider():
    register_kind("fake", FakeProvider)
    FakeProvider.script, FakeProvider.calls, FakeProvider.embed_calls = [], [], []
    FakeProvider.in_flight = FakeProvider.max_in_flight = 0
    FakeProvider.delay_s, FakeProvider.reply_text = 0.0, None
    yield FakeProvider
    PROVIDER_KINDS.pop("fake", None)


def make_client(tmp_path, **kw) -> LLMClient:
    providers = kw.pop("providers", {"fake": ProviderSettings(kind="fake", max_concurrency=kw.pop("slots", 64))})
    retry = kw.pop("retry", RetryPolicy(base_delay_s=0.001, max_delay_s=0.01))
    return LLMClient(ClientConfig(cache_dir=tmp_path / "cache", providers=providers, retry=retry,
                                  call_log_path=tmp_path / "calls.jsonl", **kw))


def req(user="hi", **params) -> ChatRequest:
    params.setdefault("seed", 7)
    return ChatRequest.of("fake/m", "sys", user, role="target", **params)


async def test_samples_are_cached_one_entry_each_and_reused_for_more_or_fewer(tmp_path):
    async with make_client(tmp_path) as client:
        ten = await client.chat(req(), n=10)
        assert len(FakeProvider.calls) == 1 and FakeProvider.calls[0].n == 10
        assert len(set(ten.texts)) == 10, "repeated samples at temperature > 0 must stay distinct"
        four = await client.chat(req(), n=4)
        assert four.texts == ten.texts[:4] and all(s.cached for s in four.samples)
        twelve = await client.chat(req(), n=12)
        assert twelve.texts[:10] == ten.texts
        assert len(FakeProvider.calls) == 2 and FakeProvider.calls[1].n == 2
        # the extra samples are drawn with seed + index, as if all 12 had come from one call
        assert FakeProvider.calls[1].seed == 7 + 10 and FakeProvider.calls[1].first_index == 10
        assert len(client.cache) == 12


async def test_split_fetches_give_the_same_samples_as_one_call(tmp_path):
    from picaco.base.config import ProviderSettings as PS
    providers = {"sim": PS(kind="sim")}
    async with make_client(tmp_path / "a", providers=providers) as a:
        whole = (await a.chat(ChatRequest.of("sim/t", "s", "q", seed=3), n=10)).texts
    async with make_client(tmp_path / "b", providers=providers) as b:
        await b.chat(ChatRequest.of("sim/t", "s", "q", seed=3), n=4)
        pieces = (await b.chat(ChatRequest.of("sim/t", "s", "q", seed=3), n=10)).texts
    assert pieces == whole


async def test_key_covers_what_changes_an_answer_and_nothing_else(tmp_path):
    base = req()
    ep = "fake://default"
    k = base.sample_keys(ep, 0, 1)[0]
    assert req(temperature=0.5).sample_keys(ep, 0, 1)[0] != k
    assert req(seed=8).sample_keys(ep, 0, 1)[0] != k
    assert req(max_tokens=10).sample_keys(ep, 0, 1)[0] != k
    assert base.sample_keys("http://other/v1", 0, 1)[0] != k
    assert base.model_copy(update={"role": "judge"}).sample_keys(ep, 0, 1)[0] != k
    assert ChatRequest.of("fake/m", "sys", "hi", role="target", seed=7,
                          key_extra={"template": "v2"}).sample_keys(ep, 0, 1)[0] != k
    assert base.sample_keys(ep, 1, 1)[0] != k
    # timeouts, concurrency and key variables live in provider settings, which no key sees
    slow = {"fake": ProviderSettings(kind="fake", timeout_s=1, max_concurrency=1, api_key_env="SOME_KEY")}
    async with make_client(tmp_path, providers={"fake": ProviderSettings(kind="fake")}) as c1:
        await c1.chat(base, n=2)
    async with make_client(tmp_path, providers=slow) as c2:
        again = await c2.chat(base, n=2)
    assert all(s.cached for s in again.samples) and len(FakeProvider.calls) == 1


async def test_identical_in_flight_requests_share_one_call(tmp_path, fake_provider):
    fake_provider.delay_s = 0.05
    async with make_client(tmp_path) as client:
        results = await asyncio.gather(*[client.chat(req(), n=3) for _ in range(5)],
                                       client.chat(req(), n=5))
    assert len({tuple(r.texts[:3]) for r in results}) == 1
    # one call for samples 0-2; the n=5 request fetches only 3-4 itself
    assert sorted(c.n for c in fake_provider.calls) == [2, 3]
    assert client.usage["target"].samples_shared >= 3


async def test_concurrency_limit_per_endpoint_and_cache_hits_skip_the_queue(tmp_path, fake_provider):
    fake_provider.delay_s = 0.02
    async with make_client(tmp_path, slots=3) as client:
        await client.chat(req("cached"), n=1)
        fake_provider.delay_s = 0.3
        slow = [asyncio.create_task(client.chat(req(f"q{i}"), n=1)) for i in range(6)]
        await asyncio.sleep(0.01)
        hit = await client.chat(req("cached"), n=1)
        # answered while every slow call still holds or waits for a slot: a hit that queued for a slot
        # would come back only after a slow one finished
        assert hit.samples[0].cached and not any(t.done() for t in slow)
        await asyncio.gather(*slow)
    assert fake_provider.max_in_flight == 3


async def test_retries_honour_retry_after_and_are_counted(tmp_path, fake_provider):
    fake_provider.script = [RateLimited("slow down", provider="fake", status=429, retry_after=0.05),
                            TransientError("boom", provider="fake", status=500), None]
    async with make_client(tmp_path) as client:
        t0 = time.perf_counter()
        out = await client.chat(req(), n=1)
        assert time.perf_counter() - t0 >= 0.05
        assert out.texts and client.usage["target"].retries == 2 and client.usage["target"].calls == 1
    call, line = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()[-2:]]
    assert line["retries"] == 2 and line["status"] == "miss" and line["provider_calls"] == 1
    assert call["kind"] == "call" and call["calls"] == 1 and call["attempts"] == 3


async def test_non_retryable_errors_surface_at_once_and_cache_nothing(tmp_path, fake_provider):
    fake_provider.script = [AuthError("bad key", provider="fake", status=401, request_id="r9")]
    async with make_client(tmp_path) as client:
        with pytest.raises(AuthError) as info:
            await client.chat(req(), n=2)
        assert info.value.status == 401 and info.value.request_id == "r9"
        assert len(fake_provider.calls) == 1 and len(client.cache) == 0
    line = json.loads((tmp_path / "calls.jsonl").read_text().splitlines()[-1])
    assert line["status"] == "error" and line["error"] == "AuthError"


async def test_retries_are_bounded_by_count_and_by_time(tmp_path, fake_provider):
    fake_provider.script = [TransientError("x", provider="fake", status=503)] * 10
    async with make_client(tmp_path, retry=RetryPolicy(max_attempts=3, base_delay_s=0.001)) as client:
        with pytest.raises(RetriesExhausted) as info:
            await client.chat(req(), n=1)
        assert info.value.attempts == 3 and isinstance(info.value.last, TransientError)
    fake_provider.script = [RateLimited("x", provider="fake", status=429, retry_after=5.0)] * 10
    async with make_client(tmp_path, retry=RetryPolicy(max_attempts=50, max_total_s=1.0)) as client:
        with pytest.raises(RetriesExhausted) as info:
            await client.chat(req("other"), n=1)
        assert info.value.attempts == 1, "a Retry-After beyond the time budget gives up at once, without waiting"
    assert len(client.cache) == 0


async def test_empty_and_filtered_outputs_are_returned_but_not_cached(tmp_path, fake_provider):
    fake_provider.reply_text = lambda call, k: "" if k == 0 else "fine"
    async with make_client(tmp_path) as client:
        out = await client.chat(req(), n=2)
        assert out.texts == ["", "fine"]
        assert len(client.cache) == 1
        again = await client.chat(req(), n=2)
        assert [s.cached for s in again.samples] == [False, True]


async def test_cache_modes(tmp_path):
    async with make_client(tmp_path) as client:
        first = await client.chat(req(), n=2)
    async with make_client(tmp_path, cache_mode="refresh") as client:
        refreshed = await client.chat(req(), n=2)
        assert not any(s.cached for s in refreshed.samples)
    assert len(FakeProvider.calls) == 2
    async with make_client(tmp_path, cache_mode="off") as client:
        await client.chat(req("new"), n=1)
        assert len(client.cache) == 2  # nothing written
    async with make_client(tmp_path) as client:
        assert all(s.cached for s in (await client.chat(req(), n=2)).samples)
    assert first.texts == refreshed.texts  # the fake is deterministic, refresh overwrote with the same


async def test_embeddings_cache_per_text_and_encode_only_the_missing(tmp_path, fake_provider):
    async with make_client(tmp_path) as client:
        a = await client.embed("fake/e", ["alpha", "beta", "alpha"])
        assert a.shape == (3, 3) and a.dtype == np.float32 and np.array_equal(a[0], a[2])
        b = await client.embed("fake/e", ["beta", "gamma", "delta", "alpha"])
        assert fake_provider.embed_calls == [["alpha", "beta"], ["gamma", "delta"]]
        assert np.array_equal(b[0], a[1]) and b[1][0] == len("gamma")
        u = client.usage["embedding"]
        assert (u.samples_hit, u.samples_miss) == (2, 4)


async def test_usage_cost_and_persistent_stats(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text('"fake/m": {input: 1.0, output: 2.0}\n')
    async with make_client(tmp_path, prices_path=prices) as client:
        await client.chat(req(), n=2)
        u = client.usage["target"]
        assert (u.prompt_tokens, u.completion_tokens) == (10, 10)
        assert u.cost_usd == pytest.approx((10 * 1.0 + 10 * 2.0) / 1e6)
    async with make_client(tmp_path, prices_path=prices) as client:
        await client.chat(req(), n=2)
        u = client.usage["target"]
        assert u.cost_usd == 0 and u.saved_prompt_tokens == 10 and u.saved_completion_tokens == 10
        stats_cache = client.cache
    from picaco.llm.cache import ResponseCache
    stats = ResponseCache(tmp_path / "cache").stats()
    assert stats["by_role"]["target"]["hits"] == 2 and stats["by_role"]["target"]["misses"] == 2
    assert stats["by_role"]["target"]["saved_cost_microusd"] == 30
    assert stats["entries"] == 2 and stats_cache is not None


async def test_unpriced_models_are_reported_not_free(tmp_path):
    async with make_client(tmp_path) as client:
        await client.chat(req(), n=1)
        assert client.usage["target"].unpriced_tokens == 15 and client.usage["target"].cost_usd == 0


async def test_bad_model_strings_give_one_line_errors(tmp_path):
    async with make_client(tmp_path) as client:
        with pytest.raises(ConfigError, match="unknown provider 'nope'"):
            await client.chat(ChatRequest.of("nope/model", None, "x"))
        with pytest.raises(ConfigError, match="provider/model"):
            await client.chat(ChatRequest.of("gpt-4o", None, "x"))
    assert len(client.cache) == 0


async def test_content_filtered_error_is_not_cached(tmp_path, fake_provider):
    fake_provider.script = [ContentFiltered("blocked", provider="fake", status=400)]
    async with make_client(tmp_path) as client:
        with pytest.raises(ContentFiltered):
            await client.chat(req(), n=1)
        assert len(client.cache) == 0 and client.usage["target"].errors == 1


def test_a_client_survives_a_new_event_loop(tmp_path):
    client = make_client(tmp_path)
    first = asyncio.run(client.chat(req(), n=1))
    second = asyncio.run(client.chat(req("b"), n=1))
    assert first.texts and second.texts
    asyncio.run(client.aclose())


# ---- issue 10: content-filtered replies as missing samples; a call log line per paid call ------------------
async def test_a_filtered_call_can_come_back_as_missing_samples(tmp_path, fake_provider):
    async with make_client(tmp_path) as client:
        await client.chat(req(), n=1)  # sample 0 cached
        fake_provider.script = [ContentFiltered("blocked", provider="fake", status=200, request_id="r5")]
        out = await client.chat(req(), n=3, filtered="missing")
        assert out.texts == [out.texts[0], "", ""] and out.samples[0].cached and out.texts[0]
        assert [s.filtered for s in out.samples] == [False, True, True] and out.filtered == 2
        assert [s.finish_reason for s in out.samples[1:]] == ["content_filter"] * 2
        assert len(client.cache) == 1, "a refused sample is never cached"
        u = client.usage["target"]
        assert u.samples_filtered == 2 and u.errors == 0
        again = await client.chat(req(), n=3, filtered="missing")  # asked again, answered this time
        assert again.filtered == 0 and all(again.texts)
    lines = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    filtered_call = [x for x in lines if x["kind"] == "call" and x["filtered"]]
    assert len(filtered_call) == 1 and filtered_call[0]["n"] == 2 and filtered_call[0]["calls"] == 1
    assert [x["filtered"] for x in lines if x["kind"] == "chat"] == [0, 2, 0]


async def test_a_filtered_call_still_raises_by_default(tmp_path, fake_provider):
    fake_provider.script = [ContentFiltered("blocked", provider="fake", status=200)]
    async with make_client(tmp_path) as client:
        with pytest.raises(ContentFiltered):
            await client.chat(req(), n=2)
        with pytest.raises(ValueError, match="filtered"):
            await client.chat(req(), n=2, filtered="ignore")


async def test_every_paid_call_is_logged_before_its_request_ends(tmp_path, fake_provider, monkeypatch):
    """kill -9 while a request is still running: the calls it already paid for (and cached) are on the log."""
    gate = asyncio.Event()
    calls_seen = []

    async def generate(self, call):
        calls_seen.append(call.first_index)
        if len(calls_seen) == 2:
            await gate.wait()  # the request's second call hangs: the process "dies" here
        return ChatReply([Completion(f"s{call.first_index + k}", "stop") for k in range(call.n)],
                         prompt_tokens=4, completion_tokens=3 * call.n)

    async with make_client(tmp_path) as client:
        await client.chat(req(), n=1, start=2)  # sample 2 cached: the next request needs samples 0-1 and 3-4
        monkeypatch.setattr(fake_provider, "generate", generate)
        task = asyncio.create_task(client.chat(req(), n=5))
        while len(calls_seen) < 2:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        lines = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
        paid = [x for x in lines if x["kind"] == "call"]
        assert [(x["first"], x["n"]) for x in paid] == [(2, 1), (0, 2)], "the answered call is on the log"
        assert all(x["calls"] == 1 for x in paid) and paid[1]["prompt_tokens"] == 4
        assert len(client.cache) == 3  # ... and in the cache
        assert [x["kind"] for x in lines].count("chat") == 1  # the running request has no line yet
        gate.set()
        await task
    from picaco.llm.calllog import paid_calls, read_call_log, usage_by_role

    lines = read_call_log(tmp_path / "calls.jsonl")
    assert paid_calls(lines) == 3 and usage_by_role(lines)["target"]["samples_drawn"] == 5
    assert usage_by_role(lines)["target"]["requests"] == 2 and usage_by_role(lines)["target"]["prompt_tokens"] == 10 + 4 + 4
    assert lines[-1]["kind"] == "chat" and lines[-1]["provider_calls"] == 2 and "calls" not in lines[-1]
