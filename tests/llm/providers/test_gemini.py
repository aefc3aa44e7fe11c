"""GeminiProvider driving the real `google-genai` client against the simulator server on a loopback port."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import warnings

import numpy as np
import pytest
from wire_calls import MESSAGES, chat_call, generate_once

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm import errors as llm_errors
from picaco.llm.providers import make_provider
from picaco.llm.providers.base import ChatCall
from picaco.llm.providers.gemini import GeminiProvider, _retry_delay, finish_reason_of
from picaco.sim.engine import SimEngine
from picaco.sim.worlds import make_world


def make_call(n: int = 1, seed: int | None = 1, model: str = "gemini-sim", **params) -> ChatCall:
    return chat_call(model, n, seed, **params)


def provider_for(url: str, timeout_s: float = 0.5, **kw) -> GeminiProvider:
    return GeminiProvider("gemini", ProviderSettings(kind="gemini", base_url=url, timeout_s=timeout_s, **kw))


async def generate(url: str, call: ChatCall | None = None, **kw):
    return await generate_once(provider_for(url, **kw), call or make_call())


async def test_candidates_usage_and_response_id(server):
    reply = await generate(server.gemini_base_url, make_call(n=3, seed=4))
    assert len(reply.completions) == 3
    assert all(c.finish_reason == "stop" and c.text for c in reply.completions)
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    last = server.request_log()[-1]
    assert reply.request_id == last["request_id"] and last["path"].endswith("/models/gemini-sim:generateContent")


async def test_seed_determinism_and_same_text_as_openai_route(server):
    url = server.gemini_base_url
    three = [c.text for c in (await generate(url, make_call(n=3, seed=20))).completions]
    messages = [{"role": m.role, "content": m.content} for m in MESSAGES]
    engine = SimEngine(make_world("echo")).chat("gemini-sim", messages, n=3, seed=20, temperature=1.0,
                                                max_tokens=512)
    assert three == engine.texts  # system_instruction + contents arrive as the same conversation
    assert [c.text for c in (await generate(url, make_call(n=3, seed=20))).completions] == three
    assert [c.text for c in (await generate(url, make_call(n=2, seed=21))).completions] == three[1:]


async def test_generation_config_reaches_the_server(server):
    url = server.gemini_base_url
    full = (await generate(url, make_call(seed=5))).completions[0].text
    word = full.split()[3]
    stopped = (await generate(url, make_call(seed=5, stop=(word,)))).completions[0]
    assert stopped.text == full[: full.find(word)] and stopped.finish_reason == "stop"
    assert (await generate(url, make_call(seed=5, max_tokens=4))).completions[0].finish_reason == "length"
    greedy = await generate(url, make_call(n=3, seed=5, temperature=0.0))
    assert len({c.text for c in greedy.completions}) == 1


async def test_embeddings_shape_and_order(server):
    texts = ["red apples", "green pears in winter", "a cold cellar"]
    p = provider_for(server.gemini_base_url)
    reply = await p.embed("text-embedding-sim", texts)
    await p.aclose()
    assert reply.vectors.dtype == np.float32 and reply.vectors.shape == (3, 256)
    np.testing.assert_allclose(reply.vectors, SimEngine(make_world("echo")).embed("text-embedding-sim", texts),
                               atol=1e-7)
    assert server.request_log()[-1]["path"].endswith(":batchEmbedContents")
    assert p.embed_batch_size() == 100


async def test_429_is_rate_limited_with_retry_after_and_no_sdk_retry(make_server):
    s = make_server(rate_429=1.0, retry_after_s=0.05)
    with pytest.raises(llm_errors.RateLimited) as ei:
        await generate(s.gemini_base_url)
    assert ei.value.status == 429 and ei.value.retry_after == pytest.approx(0.05)
    assert ei.value.request_id == s.request_log()[0]["request_id"]
    assert len(s.request_log()) == 1


async def test_500_is_transient_and_not_retried(make_server):
    s = make_server(rate_500=1.0)
    with pytest.raises(llm_errors.TransientError) as ei:
        await generate(s.gemini_base_url)
    assert type(ei.value) is llm_errors.TransientError and ei.value.status == 500
    assert len(s.request_log()) == 1


async def test_hang_times_out_quickly(make_server):
    s = make_server(rate_hang=1.0, hang_s=5.0)
    t = time.perf_counter()
    with pytest.raises(llm_errors.TransientError, match="timed out") as ei:
        await generate(s.gemini_base_url, timeout_s=0.3)
    # the timeout ended it, not the hang
    assert time.perf_counter() - t < 5.0 and type(ei.value) is llm_errors.TransientError


@pytest.mark.parametrize("fault", ["truncated", "malformed"])
async def test_bad_bodies_are_malformed_replies(make_server, fault):
    s = make_server(**{f"rate_{fault}": 1.0})
    with pytest.raises(llm_errors.MalformedReply):
        await generate(s.gemini_base_url)


async def test_bad_embedding_bodies_are_malformed_replies(make_server):
    for fault in ("truncated", "malformed"):
        p = provider_for(make_server(**{f"rate_{fault}": 1.0}).gemini_base_url)
        with pytest.raises(llm_errors.MalformedReply):
            await p.embed("text-embedding-sim", ["a b", "c d"])
        await p.aclose()


async def test_blocked_prompt_is_content_filtered(make_server):
    s = make_server(rate_filtered=1.0)
    with pytest.raises(llm_errors.ContentFiltered, match="SAFETY") as ei:
        await generate(s.gemini_base_url)
    assert ei.value.request_id == s.request_log()[0]["request_id"]


async def test_context_too_long(make_server):
    s = make_server(max_context_tokens=12)
    with pytest.raises(llm_errors.ContextTooLong, match="exceeds the maximum number of tokens") as ei:
        await generate(s.gemini_base_url)
    assert ei.value.status == 400


async def test_unknown_model_is_bad_request(make_server):
    s = make_server(models=["known"])
    with pytest.raises(llm_errors.BadRequest, match="not found") as ei:
        await generate(s.gemini_base_url, make_call(model="nope"))
    assert ei.value.status == 404


async def test_wrong_or_missing_key_is_auth_error_without_the_key(make_server, monkeypatch):
    s = make_server(api_key="right-key-42")
    monkeypatch.setenv("PICACO_TEST_GEMINI_KEY", "wrong-key-secret-9876")
    with pytest.raises(llm_errors.AuthError) as ei:
        await generate(s.gemini_base_url, api_key_env="PICACO_TEST_GEMINI_KEY")
    assert ei.value.status == 400 and "wrong-key-secret-9876" not in str(ei.value)  # Gemini says 400 API_KEY_INVALID
    monkeypatch.setenv("PICACO_TEST_GEMINI_KEY", "right-key-42")
    assert (await generate(s.gemini_base_url, api_key_env="PICACO_TEST_GEMINI_KEY")).completions


async def test_unreachable_base_url_fails_fast():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    t = time.perf_counter()
    with pytest.raises(llm_errors.Unreachable) as ei:
        await generate(url, timeout_s=5.0)
    assert time.perf_counter() - t < 5.0 and url in str(ei.value)  # refused, not waited out to the timeout


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="GEMINI_API_KEY is not set: export it .*provider 'gemini'"):
        make_provider("gemini")
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    assert make_provider("gemini").endpoint == "https://generativelanguage.googleapis.com"
    monkeypatch.delenv("MY_GEMINI_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_GEMINI_KEY"):  # GOOGLE_API_KEY only backs the default variable
        GeminiProvider("gemini", ProviderSettings(api_key_env="MY_GEMINI_KEY"))


def test_a_provider_works_across_event_loops(server):
    p = provider_for(server.gemini_base_url)
    first = asyncio.run(p.generate(make_call(seed=3)))  # this loop closes with the client still open

    async def second_then_close():
        try:
            return await p.generate(make_call(seed=3))
        finally:
            await p.aclose()

    assert asyncio.run(second_then_close()).completions == first.completions
    with warnings.catch_warnings():  # the first loop's sockets could not be closed once it was gone
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_safety_finish_keeps_partial_text_as_content_filter():
    from google.genai import types

    p = provider_for("http://127.0.0.1:1")
    resp = types.GenerateContentResponse(candidates=[
        types.Candidate(index=0, finish_reason="SAFETY", content=types.Content(role="model", parts=[])),
        types.Candidate(index=1, finish_reason="STOP",
                        content=types.Content(role="model", parts=[types.Part(text="fine")])),
    ])
    reply = p._chat_reply(resp, make_call(n=2))
    assert [(c.text, c.finish_reason) for c in reply.completions] == [("", "content_filter"), ("fine", "stop")]
    resp.candidates[1] = types.Candidate(index=1, finish_reason="PROHIBITED_CONTENT")
    with pytest.raises(llm_errors.ContentFiltered):
        p._chat_reply(resp, make_call(n=2))


def test_finish_reasons_and_retry_delay():
    assert finish_reason_of("STOP") == "stop" and finish_reason_of("MAX_TOKENS") == "length"
    assert finish_reason_of("RECITATION") == "content_filter" and finish_reason_of(None) is None
    assert finish_reason_of("MALFORMED_FUNCTION_CALL") == "malformed_function_call"
    assert _retry_delay([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]) == 37.0
    assert _retry_delay([{"@type": "type.googleapis.com/google.rpc.ErrorInfo"}]) is None
