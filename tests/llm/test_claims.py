"""Two workers that miss the same samples at once on a shared Postgres cache pay for them once: one claims
and fetches, the other waits and reads them (picaco/llm/claims.py); a dead holder's claim lapses and the
other worker fetches then. Each worker is an LLMClient on an event loop in its own thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from picaco.base.config import ClientConfig, ProviderSettings
from picaco.llm.cache_pg import PostgresCache
from picaco.llm.calllog import paid_calls, read_call_log
from picaco.llm.client import LLMClient
from picaco.llm.errors import BadRequest
from picaco.llm.providers import PROVIDER_KINDS, register_kind
from picaco.llm.providers.sim import SimProvider
from picaco.llm.request import ChatRequest, embedding_key, keys_from_prefix

pytestmark = pytest.mark.slow

N = 6
TEXTS = ["alpha", "beta", "gamma", "delta"]


class CountingSim(SimProvider):
    """The simulator, counting every sample and text it is asked to draw (all threads together)."""

    lock = threading.Lock()
    samples = 0
    texts = 0

    async def generate(self, call):
        with CountingSim.lock:
            CountingSim.samples += call.n
        return await super().generate(call)

    async def embed(self, model, texts):
        with CountingSim.lock:
            CountingSim.texts += len(texts)
        await asyncio.sleep(self.latency_s)
        return await super().embed(model, texts)


@pytest.fixture
def counting(pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("PICACO_CACHE_URL", pg_url)
    register_kind("counting", CountingSim)
    CountingSim.samples = CountingSim.texts = 0
    yield
    PROVIDER_KINDS.pop("counting", None)


def config(tmp_path, name: str, **extra) -> ClientConfig:
    providers = {"cs": ProviderSettings(kind="counting", options={"world": "echo", "latency_ms": 300})}
    return ClientConfig(cache_dir=tmp_path / name, call_log_path=tmp_path / f"{name}.jsonl", providers=providers,
                        **extra)


REQUEST = ChatRequest.of("cs/target", "Be brief.", "What is kindness?", role="target", seed=7, temperature=1.0)


def worker(cfg: ClientConfig, barrier: threading.Barrier, out: dict, name: str) -> None:
    async def main():
        async with LLMClient(cfg) as client:
            barrier.wait()  # both ask at the same moment
            chat = await client.chat(REQUEST, n=N)
            vectors = await client.embed("cs/embed", TEXTS)
            out[name] = ([s.text for s in chat.samples], vectors.tolist(), client.usage_by_role())
    try:
        asyncio.run(main())
    except BaseException as exc:  # surfaced by the test, which checks every worker answered
        out[name] = exc


def test_two_workers_asking_at_once_pay_for_each_sample_once(counting, tmp_path):
    barrier, out = threading.Barrier(2), {}
    threads = [threading.Thread(target=worker, args=(config(tmp_path, w), barrier, out, w)) for w in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(out.get(w), tuple) for w in "ab"), out
    assert CountingSim.samples == N and CountingSim.texts == len(TEXTS), "each sample and text paid once"
    assert out["a"][0] == out["b"][0] and out["a"][1] == out["b"][1], "both workers got the same answers"
    for role, paid, total in (("target", N, N), ("embedding", len(TEXTS), len(TEXTS))):
        usages = [out[w][2][role] for w in "ab"]
        assert sum(u["samples_miss"] for u in usages) == paid
        assert sum(u["samples_shared_remote"] for u in usages) == total, "the other worker's are shared, not paid"
        assert sum(u["samples_hit"] for u in usages) == 0
    lines = [line for w in "ab" for line in read_call_log(tmp_path / f"{w}.jsonl")]
    assert paid_calls(lines) == sum(out[w][2][r]["calls"] for w in "ab" for r in ("target", "embedding"))
    for kind, total in (("chat", N), ("embed", len(TEXTS))):
        requests = [line for line in lines if line["kind"] == kind]
        assert sum(line["shared_remote"] for line in requests) == total
        assert sum(line["misses"] for line in requests) == total, "the call log books shared ones apart from paid"
    # a third worker afterwards reads everything from the cache
    barrier, late = threading.Barrier(1), {}
    worker(config(tmp_path, "late"), barrier, late, "late")
    assert late["late"][0] == out["a"][0] and CountingSim.samples == N and CountingSim.texts == len(TEXTS)


def test_a_dead_holders_claim_lapses_and_the_other_worker_fetches(counting, pg_url, tmp_path):
    cfg = config(tmp_path, "a", claim_ttl_s=0.5)
    probe = LLMClient(cfg)
    endpoint = probe.endpoint_of("cs/target")
    keys = keys_from_prefix(REQUEST.key_prefix(endpoint), 0, N)
    text_keys = [embedding_key("cs", "embed", probe.endpoint_of("cs/embed"), t) for t in TEXTS]
    asyncio.run(probe.aclose())
    dead = PostgresCache(pg_url)  # a worker that claimed, then died before writing a row
    try:
        assert dead.claim(keys + text_keys, ttl_s=1.0) == set(keys + text_keys)
    finally:
        dead.close()

    async def main():
        async with LLMClient(cfg) as client:
            t0 = time.monotonic()
            chat = await client.chat(REQUEST, n=N)
            vectors = await client.embed("cs/embed", TEXTS)
            return chat, vectors, time.monotonic() - t0, client.usage_by_role()

    chat, vectors, elapsed, usage = asyncio.run(main())
    assert elapsed >= 0.9, "the worker waited for the claim to lapse"
    assert CountingSim.samples == N and CountingSim.texts == len(TEXTS)
    assert all(s.text and not s.cached for s in chat.samples) and vectors.shape[0] == len(TEXTS)
    assert usage["target"]["samples_miss"] == N and usage["target"]["samples_shared_remote"] == 0
    assert usage["embedding"]["samples_miss"] == len(TEXTS)


class FailingSim(SimProvider):
    """Holds its claim for a while, then the call fails (not retryable)."""

    async def generate(self, call):
        await asyncio.sleep(0.5)
        raise BadRequest("refused on purpose", provider=self.name, status=400)


def test_a_failed_fetch_releases_its_claims_so_a_waiting_worker_fetches_at_once(counting, tmp_path):
    register_kind("failing", FailingSim)
    failing = ClientConfig(cache_dir=tmp_path / "f", claim_ttl_s=60,
                           providers={"cs": ProviderSettings(kind="failing", options={"world": "echo"})})
    waiting = config(tmp_path, "w", claim_ttl_s=60)

    raised = []

    async def holder():
        async with LLMClient(failing) as client:
            try:
                await client.chat(REQUEST, n=N)
            except BadRequest as exc:
                raised.append(exc)

    async def waiter():
        await asyncio.sleep(0.2)  # the holder has claimed every sample by now
        async with LLMClient(waiting) as client:
            t0 = time.monotonic()
            chat = await client.chat(REQUEST, n=N)
            return chat, time.monotonic() - t0, client.usage_by_role()["target"]

    try:
        held = threading.Thread(target=lambda: asyncio.run(holder()))
        held.start()
        chat, elapsed, usage = asyncio.run(waiter())
        held.join(30)
    finally:
        PROVIDER_KINDS.pop("failing", None)
    assert len(raised) == 1, "the holder's call failed"
    assert elapsed < 10, "released at the failure, not after the 60 s claim"
    assert elapsed > 0.2, "it did wait for the holder"
    assert CountingSim.samples == N and usage["samples_miss"] == N and all(s.text for s in chat.samples)


def test_refresh_mode_recomputes_stored_samples_instead_of_reading_them_as_shared(counting, tmp_path):
    async def ask(cfg):
        async with LLMClient(cfg) as client:
            await client.chat(REQUEST, n=N)
            return client.usage_by_role()["target"]

    first = asyncio.run(ask(config(tmp_path, "a")))
    again = asyncio.run(ask(config(tmp_path, "b", cache_mode="refresh")))
    assert first["samples_miss"] == N and again["samples_miss"] == N and again["samples_shared_remote"] == 0
    assert CountingSim.samples == 2 * N
