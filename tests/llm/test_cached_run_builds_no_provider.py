"""The cache answers before any provider is built: a whole run answered by the cache builds no provider
(so no SDK client, no key lookup, no engine), chat and embeddings alike."""

from __future__ import annotations

import asyncio

from tiny_run import small_run_config

from picaco.base.config import ClientConfig
from picaco.config import parse_run_config
from picaco.llm.client import LLMClient
from picaco.llm.providers.base import Provider
from picaco.llm.request import ChatRequest
from picaco.method.run import optimize


def spy_on_providers(monkeypatch) -> list[str]:
    """The names of the providers built from now on (every provider, SDK-backed or not, is a Provider)."""
    built: list[str] = []
    init = Provider.__init__

    def spy(self, name, settings):
        built.append(name)
        init(self, name, settings)

    monkeypatch.setattr(Provider, "__init__", spy)
    return built


def test_the_spy_sees_a_provider_built_for_an_uncached_call(tmp_path, monkeypatch):
    built = spy_on_providers(monkeypatch)

    async def one_call() -> None:
        config = ClientConfig(cache_dir=tmp_path / "cache", call_log_path=None)
        async with LLMClient(config) as client:
            await client.chat(ChatRequest.of("sim/t", None, "hello", seed=1))
            await client.embed("sim/embed", ["hello"])

    asyncio.run(one_call())
    assert built == ["sim"]  # once, for chat and embeddings


def test_a_fully_cached_run_builds_no_provider(tmp_path, monkeypatch):
    first = optimize(parse_run_config(small_run_config(tmp_path)))
    built = spy_on_providers(monkeypatch)
    # a new run name: nothing to resume from the run store, every step asks the cache
    again = optimize(parse_run_config(small_run_config(tmp_path, run_name="r2")))
    assert built == [], f"a run answered by the cache built providers {built}"
    assert again.best_instruction == first.best_instruction
