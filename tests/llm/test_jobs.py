"""The exact-p_e echo calls as a job on the one call path (ScoreJob, picaco/llm/jobs.py): the cache keys and
rows of before the path took them, the spending cap, in-flight sharing and reruns. The engine is a stand-in:
an OpenAI-compatible provider whose /completions echoes the prompt word by word (no server, no network);
the real engine's scores are checked in tests/llm/test_logprobs.py."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from fake_llm import ECHO_ENDPOINT, EchoingEngine, echoing_engine_registered, echoing_settings

from picaco.base.config import ClientConfig, ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.budget import BudgetExceeded
from picaco.llm.cache import encode_sample
from picaco.llm.calllog import read_call_log
from picaco.llm.client import LLMClient
from picaco.llm.errors import MalformedReply, RetriesExhausted
from picaco.llm.logprobs import EchoedPrompt, echo_key

MODEL = "eng/smol"
ENDPOINT = ECHO_ENDPOINT
PROMPT = "<s>user: Name a fruit.\nassistant: Apple."
EXTRA = (("world", "values"),)

# A cache row and its key as llm/logprobs.py wrote them before echoes took the one call path (computed with
# that code): a cache filled then must be hit now, with no call.
OLD_KEY = "ba462c252951c13e4038247956e31963a307bf129c3f02ca1cb4374d8e1187d4"
OLD_ROW = (b'{"text":"","kind":"prompt_logprobs","tokens":["<s>user:"," ","Name"],"text_offset":[0,8,9],'
           b'"token_logprobs":[null,-0.5,-1.25],"generated":1,"usage":{"prompt_tokens":2,"completion_tokens":1}}')


@pytest.fixture
def engine():
    with echoing_engine_registered():
        yield


def config(tmp_path, log: str = "calls.jsonl", **extra) -> ClientConfig:
    return ClientConfig(cache_dir=tmp_path / "cache", call_log_path=tmp_path / log,
                        providers={"eng": echoing_settings(tmp_path), "plain": ProviderSettings(kind="sim")}, **extra)


def lines(path, kind: str) -> list[dict]:
    return [x for x in read_call_log(path) if x["kind"] == kind]


def test_the_key_is_the_one_of_before():
    assert echo_key(MODEL, ENDPOINT, PROMPT, EXTRA) == OLD_KEY


async def test_a_row_cached_before_the_call_path_is_hit_with_no_call(engine, tmp_path):
    async with LLMClient(config(tmp_path)) as client:
        await client.cache.write_rows([(OLD_KEY, OLD_ROW)])
        echoed = await client.echo(MODEL, PROMPT, key_extra=EXTRA)
        usage = client.usage_by_role()["target"]
    assert echoed == EchoedPrompt(("<s>user:", " ", "Name"), (0, 8, 9), (None, -0.5, -1.25), 2, 1)
    assert EchoingEngine.calls == [] and lines(tmp_path / "calls.jsonl", "call") == []
    assert (usage["samples_hit"], usage["calls"], usage["saved_prompt_tokens"]) == (1, 0, 2)
    assert [x["status"] for x in lines(tmp_path / "calls.jsonl", "score")] == ["hit"]


async def test_a_paid_echo_is_cached_in_the_row_shape_of_before_and_a_rerun_pays_nothing(engine, tmp_path):
    async with LLMClient(config(tmp_path)) as client:
        first = await client.echo(MODEL, "a b", key_extra=EXTRA)
        row = client.cache._get(echo_key(MODEL, ENDPOINT, "a b", EXTRA))
    assert row == (b'{"text":"","kind":"prompt_logprobs","tokens":["a"," ","b","!"],"text_offset":[0,1,2,3],'
                   b'"token_logprobs":[null,-0.5,-0.5,-0.5],"generated":1,'
                   b'"usage":{"prompt_tokens":3,"completion_tokens":1}}')
    [call] = lines(tmp_path / "calls.jsonl", "call")
    assert (call["op"], call["role"], call["n"], call["prompt_tokens"], call["completion_tokens"]) == \
        ("score", "target", 1, 3, 1)
    async with LLMClient(config(tmp_path, "rerun.jsonl")) as client:
        again = await client.echo(MODEL, "a b", key_extra=EXTRA)
    assert again == first and EchoingEngine.calls == ["a b"] and lines(tmp_path / "rerun.jsonl", "call") == []


async def test_identical_echoes_in_flight_make_one_call_and_a_malformed_reply_is_retried(engine, tmp_path):
    EchoingEngine.fail_next = 1
    async with LLMClient(config(tmp_path)) as client:
        a, b, c = await asyncio.gather(client.echo(MODEL, "x y"), client.echo(MODEL, "x y"), client.echo(MODEL, "z"))
        usage = client.usage_by_role()["target"]
    assert a == b != c and sorted(EchoingEngine.calls) == ["x y", "z"]
    assert (usage["samples_shared"], usage["samples_miss"], usage["calls"], usage["retries"]) == (1, 2, 2, 1)
    assert sum(x["attempts"] for x in lines(tmp_path / "calls.jsonl", "call")) == 3


async def test_a_malformed_reply_every_time_is_an_error_line_and_nothing_cached(engine, tmp_path):
    EchoingEngine.fail_next = 99
    cfg = config(tmp_path).model_copy(update={"retry": config(tmp_path).retry.model_copy(
        update={"max_attempts": 2, "base_delay_s": 0.0})})
    async with LLMClient(cfg) as client:
        with pytest.raises(RetriesExhausted, match="not an echoed completion with logprobs") as err:
            await client.echo(MODEL, "x")
        assert isinstance(err.value.__cause__, MalformedReply)
        assert client.cache.get_sample(echo_key(MODEL, ENDPOINT, "x")) is None
    assert [x["status"] for x in lines(tmp_path / "calls.jsonl", "score")] == ["error"]


async def test_a_token_budget_stops_before_the_echo_that_could_pass_it(engine, tmp_path):
    long = " ".join(["word"] * 100)  # 499 bytes: bounded at 499 + the template allowance 72 + 1 generated token
    async with LLMClient(config(tmp_path, budget_tokens=500)) as client:
        await client.echo(MODEL, "a b")  # bounded at 76, pays 4 tokens
        with pytest.raises(BudgetExceeded, match=r"budget reached: spent 4 tokens of client.budget_tokens 500.*"
                                                 r"the next scoring call of eng/smol is bounded at 572 tokens"):
            await client.echo(MODEL, long)
    assert EchoingEngine.calls == ["a b"]  # the second was never sent
    # a resumed run counts the echo tokens already paid, from its call log
    async with LLMClient(config(tmp_path, budget_tokens=575)) as client:
        assert client.budget.spent.tokens == 4
        with pytest.raises(BudgetExceeded):
            await client.echo(MODEL, long)
    async with LLMClient(config(tmp_path, budget_tokens=576)) as client:
        await client.echo(MODEL, long)
    assert EchoingEngine.calls == ["a b", long]


async def test_a_provider_without_prompt_log_probs_is_refused_before_it_is_built(engine, tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(LLMClient, "provider", lambda self, name: built.append(name))
    async with LLMClient(config(tmp_path)) as client:
        with pytest.raises(ConfigError, match="provider 'plain' .* gives no prompt log-probs"):
            await client.echo("plain/target", "x")
    assert built == [] and EchoingEngine.calls == []


@pytest.mark.slow
def test_two_workers_sharing_a_postgres_cache_pay_for_one_echo(engine, pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("PICACO_CACHE_URL", pg_url)
    EchoingEngine.latency_s = 0.5  # the second worker asks while the first one's call is out
    barrier, out = threading.Barrier(2), {}

    def worker(name: str) -> None:
        async def main():
            async with LLMClient(config(tmp_path, f"{name}.jsonl")) as client:
                barrier.wait()  # both ask at the same moment
                echoed = await client.echo(MODEL, PROMPT)
                return echoed, client.usage_by_role()["target"]
        try:
            out[name] = asyncio.run(main())
        except BaseException as exc:  # surfaced below: every worker must answer
            out[name] = exc

    threads = [threading.Thread(target=worker, args=(w,)) for w in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(out.get(w), tuple) for w in "ab"), out
    assert EchoingEngine.calls == [PROMPT] and out["a"][0] == out["b"][0]
    usages = [out[w][1] for w in "ab"]
    assert sorted((u["samples_miss"], u["samples_shared_remote"], u["calls"]) for u in usages) == [(0, 1, 0), (1, 0, 1)]
    assert sum(len(lines(tmp_path / f"{w}.jsonl", "call")) for w in "ab") == 1


def test_the_row_shape_is_a_sample_row():
    # the sample cache's own encoding (no key sorting, no ASCII escapes) is what the rows above are in
    assert encode_sample(json.loads(OLD_ROW)) == OLD_ROW
