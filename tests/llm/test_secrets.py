"""API keys come from the environment only and never reach the cache, the call log or error messages."""

from __future__ import annotations

import pytest

from picaco.base.config import ClientConfig, ProviderSettings, RetryPolicy
from picaco.base.errors import ConfigError
from picaco.llm.client import LLMClient
from picaco.llm.errors import AuthError
from picaco.llm.request import ChatRequest
from picaco.sim.server import SimServerConfig, start_server_thread

SECRET = "sk-test-" + "Zq9" * 12


def everything_written(tmp_path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


async def test_key_is_used_but_never_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("PICACO_TEST_KEY", SECRET)
    with start_server_thread(SimServerConfig(api_key=SECRET)) as server:
        providers = {"local": ProviderSettings(kind="openai", base_url=server.openai_base_url,
                                               api_key_env="PICACO_TEST_KEY", timeout_s=5)}
        cfg = ClientConfig(cache_dir=tmp_path / "cache", call_log_path=tmp_path / "calls.jsonl", providers=providers)
        async with LLMClient(cfg) as client:
            out = await client.chat(ChatRequest.of("local/m", "s", "hello", seed=1), n=2)
            vecs = await client.embed("local/e", ["a text"])
        assert len(out.texts) == 2 and vecs.shape[0] == 1
        monkeypatch.setenv("PICACO_TEST_KEY", SECRET[::-1])  # a wrong key
        async with LLMClient(cfg.model_copy(update={"retry": RetryPolicy(max_attempts=1)})) as client:
            with pytest.raises(AuthError) as info:
                await client.chat(ChatRequest.of("local/m", "s", "other", seed=1))
        assert SECRET[::-1] not in str(info.value) and info.value.status == 401
    blob = everything_written(tmp_path)
    assert blob and SECRET.encode() not in blob and SECRET[::-1].encode() not in blob


async def test_missing_key_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with LLMClient(ClientConfig(cache_dir=tmp_path / "cache")) as client:
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            await client.chat(ChatRequest.of("openai/gpt-4o-mini", None, "hi"))
    assert len(client.cache) == 0


# ---- issue 10: error replies that echo the key; cached answers without any key ------------------------------
ECHOED = "sk-picacoTEST" + "Zq9" * 12


@pytest.mark.parametrize("kind", ["openai", "gemini"])
@pytest.mark.parametrize("status,server_fields,n", [
    # n above the server's limit (128 for OpenAI, 8 candidates for Gemini), sent since the settings allow it
    (400, {"api_key": ECHOED}, 200),
    (401, {"api_key": "sk-the-gateway-wants-another"}, 1),
    (404, {"api_key": ECHOED, "models": ["another-model"]}, 1),
    (500, {"api_key": ECHOED, "rate_500": 1.0}, 1),
])
async def test_an_error_reply_echoing_the_key_is_one_scrubbed_line(tmp_path, monkeypatch, kind, status,
                                                                   server_fields, n):
    from picaco.llm.errors import ProviderError

    monkeypatch.setenv("PICACO_TEST_KEY", ECHOED)
    with start_server_thread(SimServerConfig(echo_auth_in_errors=True, **server_fields)) as server:
        url = server.openai_base_url if kind == "openai" else server.gemini_base_url
        providers = {"gw": ProviderSettings(kind=kind, base_url=url, api_key_env="PICACO_TEST_KEY", timeout_s=5,
                                            max_samples_per_call=n)}
        cfg = ClientConfig(cache_dir=tmp_path / "cache", call_log_path=tmp_path / "calls.jsonl", providers=providers,
                           retry=RetryPolicy(max_attempts=2, base_delay_s=0.001))
        async with LLMClient(cfg) as client:
            with pytest.raises(ProviderError) as info:
                await client.chat(ChatRequest.of("gw/sim-model", None, "hello", seed=1), n=n)
    err = info.value
    text = str(err)
    if kind == "gemini" and status == 401:
        status = 400  # Gemini answers a wrong key with 400 API_KEY_INVALID (an AuthError all the same)
    assert err.status == status and "\n" not in text and f"status {status}" in text
    assert "gw" in text and "sim-model" in text
    assert ECHOED not in text and ECHOED not in repr(err.args)
    # no SDK exception rides along: it carries the raw server message
    inner = getattr(err, "last", err)
    assert inner.__cause__ is None and inner.__context__ is None
    assert not err.retryable or status == 500
    blob = everything_written(tmp_path)
    assert ECHOED.encode() not in blob


async def test_the_gateway_does_echo_the_key_without_picaco_in_between():
    """The fault is real: the raw reply body holds the key (so the test above tests the scrubbing)."""
    import httpx

    with start_server_thread(SimServerConfig(echo_auth_in_errors=True, api_key=ECHOED)) as server:
        r = httpx.post(server.openai_base_url + "/chat/completions", headers={"authorization": f"Bearer {ECHOED}"},
                       json={"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 200})
    assert r.status_code == 400 and ECHOED in r.text


def test_a_400_maps_to_a_non_retryable_error_naming_the_status():
    """The status was passed twice to error_for_status: a TypeError carrying the raw SDK message."""
    from picaco.llm.errors import BadRequest, error_for_status

    err = error_for_status(400, "chat with model 'm': bad", provider="gw", request_id="r1")
    assert isinstance(err, BadRequest) and not err.retryable and err.status == 400
    assert str(err) == "BadRequest (gw, status 400, request r1): chat with model 'm': bad"


def test_anything_shaped_like_a_credential_is_scrubbed_from_provider_errors():
    from picaco.llm.errors import TransientError, scrub_secrets

    err = TransientError(f"upstream said: Authorization: Bearer {ECHOED}\nx-goog-api-key: AIzaSyA1234567890abcdefghijkl",
                         provider="gw", status=502)
    assert ECHOED not in str(err) and "AIzaSyA1234567890" not in str(err) and "\n" not in str(err)
    assert scrub_secrets("a secret-ish thing", ["secret-ish"]) == "a *** thing"


async def test_a_cached_answer_needs_no_key_no_provider_and_no_sdk(tmp_path, monkeypatch):
    """A shared cache replays without credentials: the cache answers before any provider is built."""
    import numpy as np

    from picaco.llm.cache import ResponseCache
    from picaco.llm.request import embedding_key

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    chat_req = ChatRequest.of("openai/gpt-4o-mini", "s", "hello", seed=1)
    gemini_req = ChatRequest.of("gemini/gemini-2.0-flash", "s", "hello", seed=1)
    cache = ResponseCache(tmp_path / "cache")
    for req, endpoint in ((chat_req, "https://api.openai.com/v1"),
                          (gemini_req, "https://generativelanguage.googleapis.com")):
        for i, key in enumerate(req.sample_keys(endpoint, 0, 2)):
            cache.put_sample(key, {"text": f"cached {i}", "finish_reason": "stop", "usage": {}})
    cache.put_embedding(embedding_key("openai", "text-embedding-3-small", "https://api.openai.com/v1", "a text"),
                        np.ones(3, dtype=np.float32))
    cache.close()
    async with LLMClient(ClientConfig(cache_dir=tmp_path / "cache")) as client:
        out = await client.chat(chat_req, n=2)
        gem = await client.chat(gemini_req, n=2)
        vec = await client.embed("openai/text-embedding-3-small", ["a text"])
        assert out.texts == ["cached 0", "cached 1"] and gem.texts == out.texts and vec.shape == (1, 3)
        assert client._state.providers == {}, "a provider (and so its key) was looked up for cached answers"
        assert client.endpoint_of("openai/x") == "https://api.openai.com/v1"
        # one sample more than the cache holds: now the key is needed, and its absence is a one-line error
        with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
            await client.chat(chat_req, n=3)


def test_the_endpoint_from_the_settings_is_the_built_providers(monkeypatch):
    from picaco.llm.providers import DEFAULT_SETTINGS, endpoint_for, make_provider

    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("GEMINI_API_KEY", "g-x")
    overrides = {"mine": ProviderSettings(kind="openai", base_url="http://127.0.0.1:9/v1/"),
                 "gw": ProviderSettings(kind="gemini", base_url="http://127.0.0.1:9/"),
                 "simw": ProviderSettings(kind="sim", options={"world": "values", "world_malformed_rate": 0.5})}
    for name in [*DEFAULT_SETTINGS, *overrides]:
        assert endpoint_for(name, overrides) == make_provider(name, overrides).endpoint, name


def test_a_key_can_be_required_at_any_endpoint(monkeypatch):
    from picaco.llm.providers import make_provider

    monkeypatch.delenv("GW_KEY", raising=False)
    required = {"gw": ProviderSettings(kind="openai", base_url="http://127.0.0.1:9/v1", api_key_env="GW_KEY",
                                       require_key=True)}
    with pytest.raises(ConfigError, match="GW_KEY is not set"):
        make_provider("gw", required)
    optional = {"gw": required["gw"].model_copy(update={"require_key": None})}
    assert make_provider("gw", optional).endpoint == "http://127.0.0.1:9/v1"
