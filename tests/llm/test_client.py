"""The client: cache per sample, keys, cache modes, embeddings, usage and cost, content filters (the path's
in-flight sharing, slots and retries: tests/llm/test_pipeline.py)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fake_llm import FakeProvider, make_client, req

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.errors import ContentFiltered
from picaco.llm.request import ChatRequest

pytestmark = pytest.mark.usefixtures("fake_provider")


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
