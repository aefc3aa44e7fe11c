"""The one call path (picaco/llm/pipeline.py) on a scriptable provider: in-flight sharing, slots, retries,
the call line written when a call is paid."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from fake_llm import make_client, req

from picaco.base.config import RetryPolicy
from picaco.llm.calllog import paid_calls, read_call_log, usage_by_role
from picaco.llm.errors import AuthError, RateLimited, RetriesExhausted, TransientError
from picaco.llm.providers.base import ChatReply, Completion
from picaco.llm.request import ChatRequest

pytestmark = pytest.mark.usefixtures("fake_provider")


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
    lines = read_call_log(tmp_path / "calls.jsonl")
    assert paid_calls(lines) == 3 and usage_by_role(lines)["target"]["samples_drawn"] == 5
    assert usage_by_role(lines)["target"]["requests"] == 2 and usage_by_role(lines)["target"]["prompt_tokens"] == 10 + 4 + 4
    assert lines[-1]["kind"] == "chat" and lines[-1]["provider_calls"] == 2 and "calls" not in lines[-1]


async def test_usage_scopes_measure_two_concurrent_tasks_apart(tmp_path, fake_provider):
    """Two steps at once on one client (the E-step and the M-step's draft): each scope counts only the
    requests of its own task and the tasks it starts; the client's total counts both."""
    from picaco.llm.usage import usage_scope

    fake_provider.delay_s = 0.02
    async with make_client(tmp_path) as client:
        async def step(users: list[str]) -> dict:
            with usage_scope() as scope:
                await asyncio.gather(*[client.chat(req(u), n=2) for u in users])
                await client.chat(req(users[0]), n=2)  # a cache hit, in this scope only
            return {role: u.as_dict() for role, u in scope.items()}

        a, b = await asyncio.gather(step(["a1", "a2", "a3"]), step(["b1"]))
    assert (a["target"]["requests"], a["target"]["calls"], a["target"]["samples_hit"]) == (4, 3, 2)
    assert (b["target"]["requests"], b["target"]["calls"], b["target"]["samples_hit"]) == (2, 1, 2)
    total = client.usage["target"]
    assert (total.requests, total.calls, total.samples_hit) == (6, 4, 4)


async def test_queued_sampling_calls_go_before_queued_judge_calls(tmp_path, fake_provider):
    fake_provider.delay_s = 0.05
    async with make_client(tmp_path, slots=1) as client:
        first = asyncio.create_task(client.chat(req("first"), n=1))
        await asyncio.sleep(0.01)
        judges = [asyncio.create_task(client.chat(ChatRequest.of("fake/m", None, f"judge {i}", role="judge", seed=7)))
                  for i in range(2)]
        await asyncio.sleep(0.01)
        sample = asyncio.create_task(client.chat(req("sample"), n=1))
        await asyncio.gather(first, sample, *judges)
    users = [c.messages[-1].content for c in fake_provider.calls]
    assert users == ["first", "sample", "judge 0", "judge 1"]
