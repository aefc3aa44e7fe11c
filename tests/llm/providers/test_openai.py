"""OpenAIProvider driving the real `openai` client against the simulator server on a loopback port."""

from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import socket
import subprocess
import sys
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
from picaco.llm.providers.openai import OpenAIProvider, parse_retry_after
from picaco.llm.request import SamplingParams
from picaco.sim.engine import SimEngine
from picaco.sim.worlds import make_world


def make_call(n: int = 1, seed: int | None = 1, model: str = "sim-a", **params) -> ChatCall:
    return chat_call(model, n, seed, **params)


def provider_for(url: str, timeout_s: float = 0.5, **kw) -> OpenAIProvider:
    return OpenAIProvider("vllm", ProviderSettings(kind="openai", base_url=url, timeout_s=timeout_s, **kw))


async def generate(url: str, call: ChatCall | None = None, **kw):
    return await generate_once(provider_for(url, **kw), call or make_call())


# ---- answers ----------------------------------------------------------------------------------------------


async def test_n_samples_usage_and_request_id(server):
    reply = await generate(server.openai_base_url, make_call(n=3, seed=4))
    assert len(reply.completions) == 3
    assert all(c.finish_reason == "stop" and c.text for c in reply.completions)
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert reply.request_id == server.request_log()[-1]["request_id"]


async def test_seed_determinism_and_seed_plus_k(server):
    url = server.openai_base_url
    three = [c.text for c in (await generate(url, make_call(n=3, seed=20))).completions]
    messages = [{"role": m.role, "content": m.content} for m in MESSAGES]
    engine = SimEngine(make_world("echo")).chat("sim-a", messages, n=3, seed=20, temperature=1.0, max_tokens=512)
    assert three == engine.texts
    assert [c.text for c in (await generate(url, make_call(n=3, seed=20))).completions] == three
    assert [c.text for c in (await generate(url, make_call(n=2, seed=21))).completions] == three[1:]
    assert [c.text for c in (await generate(url, make_call(n=3, seed=77))).completions] != three


async def test_sampling_params_reach_the_server(server):
    url = server.openai_base_url
    full = (await generate(url, make_call(seed=5))).completions[0].text
    word = full.split()[3]
    stopped = (await generate(url, make_call(seed=5, stop=(word,)))).completions[0]
    assert stopped.text == full[: full.find(word)] and stopped.finish_reason == "stop"
    short = (await generate(url, make_call(seed=5, max_tokens=4))).completions[0]
    assert short.finish_reason == "length"
    greedy = await generate(url, make_call(n=3, seed=5, temperature=0.0))
    assert len({c.text for c in greedy.completions}) == 1
    top_p = await generate(url, make_call(seed=5, top_p=0.5))
    assert top_p.completions[0].text == full


async def test_max_completion_tokens_option(server):
    p = provider_for(server.openai_base_url, options={"max_tokens_param": "max_completion_tokens"})
    reply = await p.generate(make_call(seed=5, max_tokens=4))
    await p.aclose()
    assert reply.completions[0].finish_reason == "length"
    with pytest.raises(ConfigError, match="max_tokens_param"):
        provider_for(server.openai_base_url, options={"max_tokens_param": "tokens"})


async def test_embeddings_shape_and_order(server):
    texts = ["red apples", "green pears in winter", "a cold cellar", "red apples"]
    p = provider_for(server.openai_base_url)
    reply = await p.embed("emb", texts)
    await p.aclose()
    assert reply.vectors.dtype == np.float32 and reply.vectors.shape == (4, 256)
    np.testing.assert_allclose(reply.vectors, SimEngine(make_world("echo")).embed("emb", texts), atol=1e-7)
    np.testing.assert_array_equal(reply.vectors[0], reply.vectors[3])
    assert not np.allclose(reply.vectors[0], reply.vectors[1])
    assert reply.tokens > 0 and reply.request_id


# ---- faults -> typed errors ---------------------------------------------------------------------------------


async def test_429_is_rate_limited_with_retry_after(make_server):
    s = make_server(rate_429=1.0, retry_after_s=0.05)
    with pytest.raises(llm_errors.RateLimited) as ei:
        await generate(s.openai_base_url)
    err = ei.value
    assert err.status == 429 and err.retry_after == pytest.approx(0.05)
    assert err.request_id == s.request_log()[0]["request_id"]
    assert len(s.request_log()) == 1  # the SDK did not retry on its own


async def test_500_is_transient_and_not_retried_by_the_sdk(make_server):
    s = make_server(rate_500=1.0)
    with pytest.raises(llm_errors.TransientError) as ei:
        await generate(s.openai_base_url)
    assert type(ei.value) is llm_errors.TransientError and ei.value.status == 500 and ei.value.request_id
    assert len(s.request_log()) == 1


async def test_hang_times_out_quickly_as_transient(make_server):
    s = make_server(rate_hang=1.0, hang_s=5.0)
    t = time.perf_counter()
    with pytest.raises(llm_errors.TransientError, match="timed out after 0.3s") as ei:
        await generate(s.openai_base_url, timeout_s=0.3)
    assert time.perf_counter() - t < 5.0  # the 0.3 s timeout ended it, not the 5 s hang
    assert type(ei.value) is llm_errors.TransientError


async def test_dropped_connection_is_transient_not_unreachable(make_server):
    s = make_server(rate_hang=1.0, hang_s=0.02, hang_then="drop")
    with pytest.raises(llm_errors.TransientError, match="mid-request") as ei:
        await generate(s.openai_base_url)
    assert not isinstance(ei.value, llm_errors.Unreachable)


@pytest.mark.parametrize("fault", ["truncated", "malformed"])
async def test_bad_bodies_are_malformed_replies(make_server, fault):
    s = make_server(**{f"rate_{fault}": 1.0})
    with pytest.raises(llm_errors.MalformedReply) as ei:
        await generate(s.openai_base_url)
    assert ei.value.status == 200 and ei.value.retryable


async def test_bad_embedding_bodies_are_malformed_replies(make_server):
    for fault in ("truncated", "malformed"):
        p = provider_for(make_server(**{f"rate_{fault}": 1.0}).openai_base_url)
        with pytest.raises(llm_errors.MalformedReply):
            await p.embed("emb", ["a b", "c d"])
        await p.aclose()


async def test_all_choices_filtered_raises_content_filtered(make_server):
    s = make_server(rate_filtered=1.0)
    with pytest.raises(llm_errors.ContentFiltered) as ei:
        await generate(s.openai_base_url, make_call(n=2))
    assert ei.value.status == 200 and ei.value.request_id


async def test_context_too_long(make_server):
    s = make_server(max_context_tokens=12)
    with pytest.raises(llm_errors.ContextTooLong, match="maximum context length is 12") as ei:
        await generate(s.openai_base_url)
    assert ei.value.status == 400 and ei.value.request_id


async def test_unknown_model_is_bad_request(make_server):
    s = make_server(models=["known"])
    with pytest.raises(llm_errors.BadRequest, match="unknown model") as ei:
        await generate(s.openai_base_url, make_call(model="nope"))
    assert ei.value.status == 404 and not isinstance(ei.value, llm_errors.ContextTooLong)
    assert (await generate(s.openai_base_url, make_call(model="known"))).completions


async def test_auth_errors_never_show_the_key(make_server, monkeypatch):
    s = make_server(api_key="right-key-42")
    monkeypatch.setenv("PICACO_TEST_SIM_KEY", "wrong-key-secret-9876")
    with pytest.raises(llm_errors.AuthError) as ei:
        await generate(s.openai_base_url, api_key_env="PICACO_TEST_SIM_KEY")
    assert ei.value.status == 401 and "wrong-key-secret-9876" not in str(ei.value)
    monkeypatch.delenv("PICACO_TEST_SIM_KEY")
    with pytest.raises(llm_errors.AuthError):  # no key at all: the placeholder is refused too
        await generate(s.openai_base_url, api_key_env="PICACO_TEST_SIM_KEY")
    monkeypatch.setenv("PICACO_TEST_SIM_KEY", "right-key-42")
    assert (await generate(s.openai_base_url, api_key_env="PICACO_TEST_SIM_KEY")).completions


def closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


async def test_unreachable_base_url_fails_fast():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    t = time.perf_counter()
    with pytest.raises(llm_errors.Unreachable) as ei:
        await generate(url, timeout_s=5.0)
    assert time.perf_counter() - t < 5.0  # refused, not waited out to the timeout
    assert url in str(ei.value) and "\n" not in str(ei.value)


# ---- keys, registry, loops, imports ---------------------------------------------------------------------------


def test_missing_key_for_hosted_openai_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set: export it to use provider 'openai'"):
        make_provider("openai")
    monkeypatch.delenv("MY_OPENAI_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_OPENAI_KEY"):
        OpenAIProvider("openai", ProviderSettings(base_url="https://api.openai.com/v1", api_key_env="MY_OPENAI_KEY"))


def test_self_hosted_servers_need_no_key(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    p = make_provider("vllm")
    assert isinstance(p, OpenAIProvider) and p.endpoint == "http://127.0.0.1:8000/v1"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert make_provider("openai").endpoint == "https://api.openai.com/v1"


def test_a_provider_works_across_event_loops(server):
    p = provider_for(server.openai_base_url)
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


def test_retry_after_parsing():
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == pytest.approx(0.25)
    assert parse_retry_after({"retry-after": "0.05"}) == pytest.approx(0.05)
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after({"retry-after": later}) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_importing_providers_does_not_import_sdks():
    code = ("import sys, picaco.llm.providers, picaco.llm.providers.openai, picaco.llm.providers.gemini; "
            "bad = [m for m in ('openai', 'google.genai') if m in sys.modules]; assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# ---- the request on the wire -------------------------------------------------------------------------------


@pytest.mark.parametrize("options,params", [
    ({}, dict(seed=7, temperature=0.3, max_tokens=40, top_p=0.9, stop=("\n\n", "END"))),
    ({"max_tokens_param": "max_completion_tokens"}, dict(seed=None, temperature=1.0, max_tokens=12)),
])
async def test_chat_sends_exactly_what_the_sdks_create_sends(monkeypatch, options, params):
    """The provider posts its body without `create`'s transform: the request must stay the same."""
    import httpx2
    import openai

    captured: list[httpx2.Request] = []
    reply = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
             "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": f"a{i}"}}
                         for i in range(2)],
             "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}

    def handler(request):
        captured.append(request)
        return httpx2.Response(200, json=reply, headers={"x-request-id": "req_1"})

    def sdk_client():
        return openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-test-key", max_retries=0,
                                  http_client=openai.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(handler)))

    monkeypatch.setenv("PICACO_TEST_KEY", "sk-test-key")
    p = provider_for("http://127.0.0.1:9/v1", api_key_env="PICACO_TEST_KEY", options=options)
    monkeypatch.setattr(p, "_new_client", sdk_client)
    call = ChatCall(model="m", messages=MESSAGES, params=SamplingParams(**params), n=2, seed=params["seed"])
    got = await p.generate(call)
    await p.aclose()
    assert [c.text for c in got.completions] == ["a0", "a1"] and got.request_id == "req_1"
    assert (got.prompt_tokens, got.completion_tokens) == (3, 4)

    sdk = sdk_client()
    token_param = options.get("max_tokens_param", "max_tokens")
    kwargs = {"model": "m", "messages": [{"role": m.role, "content": m.content} for m in MESSAGES], "n": 2,
              "temperature": params["temperature"], token_param: params["max_tokens"]}
    kwargs.update({k: list(v) if k == "stop" else v for k, v in params.items()
                   if k in ("seed", "top_p", "stop") and v is not None})
    await sdk.chat.completions.create(**kwargs)
    await sdk.close()

    ours, theirs = captured
    assert (ours.method, str(ours.url)) == (theirs.method, str(theirs.url))
    assert json.loads(ours.content) == json.loads(theirs.content)
    assert dict(ours.headers) == dict(theirs.headers)
    assert ours.headers["authorization"] == "Bearer sk-test-key"
