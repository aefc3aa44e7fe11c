"""Servers that return fewer samples per call than asked (llama.cpp and Ollama ignore `n`): the client keeps
what came, fetches the rest in further calls, remembers the endpoint's limit, and every sample is the
cache entry it would have been had `n` been honoured."""

from __future__ import annotations

import json
import logging

import pytest

from picaco.base.config import ClientConfig, ProviderSettings
from picaco.config import parse_run_config
from picaco.llm.client import LLMClient
from picaco.llm.errors import MalformedReply
from picaco.llm.providers import PROVIDER_KINDS, register_kind
from picaco.llm.providers.base import ChatReply, Completion, Provider
from picaco.llm.request import ChatRequest
from picaco.method.run import optimize
from picaco.sim.server import SimServerConfig, config_from_args, start_server_thread


class ShortProvider(Provider):
    """Returns at most `cap` choices (option), each named by the seed it was drawn with."""

    calls: list = []
    extra = 0  # choices returned beyond what was asked (a broken server)

    def __init__(self, name, settings):
        super().__init__(name, settings)
        self.endpoint = "short://one"
        self.cap = int(settings.options.get("cap", 1))

    async def generate(self, call):
        ShortProvider.calls.append(call)
        k = min(call.n, self.cap) + ShortProvider.extra
        return ChatReply([Completion(f"seed {call.seed + i}", "stop") for i in range(k)], prompt_tokens=10,
                         completion_tokens=3 * k)


@pytest.fixture
def short_kind():
    register_kind("short", ShortProvider)
    ShortProvider.calls, ShortProvider.extra = [], 0
    yield
    PROVIDER_KINDS.pop("short", None)


def client_for(tmp_path, **settings) -> LLMClient:
    providers = {"short": ProviderSettings(kind="short", **settings)}
    return LLMClient(ClientConfig(cache_dir=tmp_path / "cache", providers=providers,
                                  call_log_path=tmp_path / "calls.jsonl"))


def request(**params) -> ChatRequest:
    return ChatRequest.of("short/m", "sys", "hi", role="target", seed=100, **params)


async def test_a_short_reply_is_kept_the_rest_fetched_and_the_limit_remembered(tmp_path, short_kind, caplog):
    caplog.set_level(logging.WARNING, logger="picaco.llm.client")
    async with client_for(tmp_path, options={"cap": 2}) as client:
        first = await client.chat(request(), n=5)
        assert first.texts == [f"seed {100 + i}" for i in range(5)]  # sample i drawn with seed + i
        # asked 5, got 2; then at most 2 per call: 2 more, then the last one
        assert [(c.n, c.seed) for c in ShortProvider.calls] == [(5, 100), (2, 102), (1, 104)]
        ShortProvider.calls.clear()
        other = await client.chat(request(temperature=0.5), n=3)
        assert [(c.n, c.seed) for c in ShortProvider.calls] == [(2, 100), (1, 102)], "the limit is remembered"
        assert len(other.samples) == 3
        usage = client.usage["target"]
        assert usage.calls == 5 and usage.samples_miss == 8
    warnings = [r.getMessage() for r in caplog.records if "per call" in r.getMessage()]
    assert len(warnings) == 1 and "at most 2 sample(s)" in warnings[0]
    lines = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [x["n"] for x in lines if x["kind"] == "call"] == [2, 2, 1, 2, 1]  # samples drawn, not asked

    ShortProvider.calls.clear()
    async with client_for(tmp_path, options={"cap": 2}) as client:
        again = await client.chat(request(), n=5)
    assert again.texts == first.texts and all(s.cached for s in again.samples) and not ShortProvider.calls


async def test_a_configured_limit_needs_no_short_reply(tmp_path, short_kind, caplog):
    caplog.set_level(logging.WARNING, logger="picaco.llm.client")
    async with client_for(tmp_path, max_samples_per_call=1, options={"cap": 1}) as client:
        reply = await client.chat(request(), n=3, start=4)
    assert reply.texts == ["seed 104", "seed 105", "seed 106"]
    assert [(c.n, c.seed) for c in ShortProvider.calls] == [(1, 104), (1, 105), (1, 106)]
    assert not [r for r in caplog.records if "per call" in r.getMessage()]


async def test_more_samples_than_asked_is_a_malformed_reply(tmp_path, short_kind):
    ShortProvider.extra = 1
    cfg = ClientConfig(cache_dir=tmp_path / "cache", retry={"max_attempts": 2, "base_delay_s": 0.001},
                       providers={"short": ProviderSettings(kind="short", options={"cap": 3})})
    async with LLMClient(cfg) as client:
        with pytest.raises(Exception) as info:
            await client.chat(request(), n=2)
    assert isinstance(info.value.__cause__ or info.value, MalformedReply)
    assert "asked for 2 samples, got 3" in str(info.value)


def test_the_sim_server_switch_and_its_flag():
    assert config_from_args(["--max-choices", "1"]).max_choices == 1
    with pytest.raises(Exception, match="max_choices"):
        SimServerConfig(max_choices=0)


@pytest.mark.parametrize("kind", ["openai", "gemini"])
async def test_one_choice_servers_give_the_samples_of_a_server_honouring_n(tmp_path, kind):
    def base_url(server):
        return server.openai_base_url if kind == "openai" else server.gemini_base_url

    with start_server_thread(SimServerConfig()) as honoured, start_server_thread(SimServerConfig(max_choices=1)) as one:
        texts = []
        for server in (honoured, one):
            providers = {"srv": ProviderSettings(kind=kind, base_url=base_url(server))}
            async with LLMClient(ClientConfig(cache_dir=tmp_path / str(len(texts)), providers=providers)) as client:
                reply = await client.chat(ChatRequest.of("srv/m", "sys", "hello there", seed=5), n=3)
            texts.append(reply.texts)
        assert [e["n"] for e in honoured.request_log()] == [3]
        assert [e["n"] for e in one.request_log()] == [1, 1, 1]
    assert texts[0] == texts[1] and len(set(texts[0])) == 3


def _run_config(tmp_path, base_url: str, name: str) -> dict:
    return {"run_name": name, "composition": "helpfulness", "prompts": {"demo_family": "hh"},
            "runs_dir": str(tmp_path / "runs"),
            "models": {"target": "http/target", "judge": "http/judge", "optimizer": "http/optimizer",
                       "embedding": "sim/embed"},
            "client": {"cache_dir": str(tmp_path / f"cache-{name}"),
                       "providers": {"http": {"kind": "openai", "base_url": base_url},
                                     "sim": {"kind": "sim", "options": {"world": "values"}}}},
            "picaco": {"n_prompts": 3, "m1": 2, "m2": 2, "iterations": 1, "noisy_samples": 3, "n_pe_samples": 2,
                       "buckets": 1, "samples_per_bucket": 3}}


def test_a_run_against_a_one_choice_server_equals_the_run_with_n_honoured(tmp_path):
    with start_server_thread(SimServerConfig(world="values")) as honoured, \
            start_server_thread(SimServerConfig(world="values", max_choices=1)) as one:
        full = optimize(parse_run_config(_run_config(tmp_path, honoured.openai_base_url, "full")))
        short = optimize(parse_run_config(_run_config(tmp_path, one.openai_base_url, "short")))
        assert short.best_instruction == full.best_instruction
        assert short.value_scores == full.value_scores
        full_log, short_log = honoured.request_log(), one.request_log()
        assert max(e["n"] for e in full_log) > 1, "the honoured run asked for several samples per call"
        assert all(e["n"] == 1 for e in short_log) and len(short_log) > len(full_log)
        one.reset_log()
        rerun = optimize(parse_run_config({**_run_config(tmp_path, one.openai_base_url, "short"),
                                           "run_name": "short-again"}))
        assert rerun.best_instruction == short.best_instruction
        assert one.request_log() == [], "a rerun is answered by the cache"
