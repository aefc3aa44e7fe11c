"""API keys come from the environment only and never reach the cache, the call log or error messages."""

from __future__ import annotations

import pytest

from picaco.llm.client import ClientConfig, LLMClient, RetryPolicy
from picaco.llm.errors import AuthError, ConfigError
from picaco.llm.providers.base import ProviderSettings
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
