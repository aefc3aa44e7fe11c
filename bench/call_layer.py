"""Call-layer benchmark: throughput, cache, embeddings and faults. Prints each figure and a final JSON line.

    .venv/bin/python bench/call_layer.py [--calls 2000] [--in-flight 64] [--latency-ms 100]

1. Throughput: `calls` chat calls against `picaco sim-server` (separate process, 100 ms latency) with 64
   in flight, through picaco's LLMClient (cache on, empty) and through a bare AsyncOpenAI loop, in the
   same run. Goal: picaco / bare >= 0.90. The bare loop calls `chat.completions.create`; picaco's
   provider posts the same request without `create`'s body transform (see providers/openai.py), so the
   ratio can exceed 1. The layer's own cost is printed separately (`layer_cpu_ms_per_call`, against a
   provider that answers at once), so that saving never hides what the layer adds.
2. Second pass over the same calls: 0 requests reach the server (its request log), median cached call
   <= 0.3 ms.
3. Embeddings: a batch of which half is cached encodes only the other half; uncached encoding through
   picaco >= 0.9 x bare SentenceTransformer.encode.
4. Faults: 20% 429 (Retry-After), 10% 500, 5% hangs: every call completes, results equal the fault-free
   run's, the call log counts the retries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picaco.base.config import ClientConfig, ProviderSettings, RetryPolicy
from picaco.llm.client import LLMClient
from picaco.llm.request import ChatRequest
from picaco.sim.server import SimServerConfig, start_server_process


def requests_for(count: int) -> list[ChatRequest]:
    return [ChatRequest.of("local/sim-model", "You are helpful.", f"Question number {i}: how do tides work?",
                           role="target", seed=i, temperature=1.0, max_tokens=64) for i in range(count)]


async def bare_openai(base_url: str, reqs: list[ChatRequest], in_flight: int) -> float:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=30)
    sem = asyncio.Semaphore(in_flight)

    async def one(r: ChatRequest):
        async with sem:
            return await client.chat.completions.create(
                model="sim-model", messages=[{"role": m.role, "content": m.content} for m in r.messages],
                n=1, seed=r.params.seed, temperature=r.params.temperature, max_tokens=r.params.max_tokens)

    t0 = time.perf_counter()
    await asyncio.gather(*[one(r) for r in reqs])
    elapsed = time.perf_counter() - t0
    await client.close()
    return elapsed


async def interleaved(rounds: int, bare, picaco) -> tuple[list[float], list[float]]:
    """Seconds of `bare()` and `picaco()` over `rounds` rounds in AB BA AB ... order, so that a drift of
    the machine favours neither side. Each callable runs one round (its argument: the round index)."""
    times: dict[str, list[float]] = {"bare": [], "picaco": []}
    for k in range(rounds):
        for side in (("bare", "picaco") if k % 2 == 0 else ("picaco", "bare")):
            times[side].append(await (bare if side == "bare" else picaco)(k))
    return times["bare"], times["picaco"]


def client_config(tmp: Path, base_url: str, in_flight: int, name: str, timeout_s: float = 30.0,
                  retry: RetryPolicy | None = None) -> ClientConfig:
    return ClientConfig(cache_dir=tmp / f"cache-{name}", call_log_path=tmp / f"calls-{name}.jsonl",
                        providers={"local": ProviderSettings(kind="openai", base_url=base_url, timeout_s=timeout_s,
                                                             max_concurrency=in_flight)},
                        retry=retry or RetryPolicy())


async def through_picaco(cfg: ClientConfig, reqs: list[ChatRequest]) -> tuple[float, list[str], list[float], LLMClient]:
    client = LLMClient(cfg)
    latencies: list[float] = []

    async def one(r):
        t = time.perf_counter()
        out = await client.chat(r, n=1)
        latencies.append((time.perf_counter() - t) * 1000)
        return out.text

    t0 = time.perf_counter()
    texts = await asyncio.gather(*[one(r) for r in reqs])
    elapsed = time.perf_counter() - t0
    await client.aclose()
    return elapsed, texts, latencies, client


async def layer_cost_per_call(tmp: Path, reqs: list[ChatRequest], in_flight: int) -> float:
    """CPU ms per call of picaco's own layer (cache miss + write, dedupe, slot, retries wrapper, call log),
    against a provider that answers at once: the part of a call that is picaco's, whatever the SDK costs."""
    from picaco.llm.providers import register_kind
    from picaco.llm.providers.base import ChatReply, Completion, Provider

    class InstantProvider(Provider):
        def __init__(self, name, settings):
            super().__init__(name, settings)
            self.endpoint = "instant"

        async def generate(self, call):
            await asyncio.sleep(0)
            return ChatReply(completions=[Completion(text=f"answer {call.seed}", finish_reason="stop")] * call.n,
                             prompt_tokens=20, completion_tokens=12)

        async def embed(self, model, texts):
            raise NotImplementedError

    register_kind("bench-instant", InstantProvider)
    instant = [r.model_copy(update={"model": "instant/m"}) for r in reqs]
    best = float("inf")
    for k in range(3):
        cfg = ClientConfig(cache_dir=tmp / f"cache-instant{k}", call_log_path=tmp / f"calls-instant{k}.jsonl",
                           providers={"instant": ProviderSettings(kind="bench-instant", max_concurrency=in_flight)})
        async with LLMClient(cfg) as client:
            t0 = time.process_time()
            await asyncio.gather(*[client.chat(r) for r in instant])
            best = min(best, (time.process_time() - t0) * 1000 / len(instant))
    return best


async def cached_call_latency(cfg: ClientConfig, reqs: list[ChatRequest]) -> list[float]:
    """Sequential, so each figure is one cached call's own cost, not a share of a gather."""
    client = LLMClient(cfg)
    out = []
    for r in reqs:
        t = time.perf_counter()
        await client.chat(r, n=1)
        out.append((time.perf_counter() - t) * 1000)
    await client.aclose()
    return out


async def embeddings(tmp: Path, rounds: int = 4) -> dict:
    from picaco.llm.providers.st import load_model

    texts = [f"Sentence {i} about the weather, the sea and the mountains in spring." for i in range(2000)]
    model = load_model("all-MiniLM-L6-v2")
    model.encode(texts[:64], batch_size=64, normalize_embeddings=True)  # warm up
    cfg = ClientConfig(cache_dir=tmp / "cache-embed", call_log_path=tmp / "calls-embed.jsonl")
    # The same encode of 1,000 texts takes 3.3-4.5 s from one round to the next here, so two rounds were not
    # enough (one run measured 0.896 with the same code that measured 0.96-1.18 in five others).
    chunks = [[f"{t} (round {k})" for t in texts] for k in range(rounds)]
    half = len(texts) // 2

    async def bare(k: int) -> float:
        t0 = time.perf_counter()
        model.encode(chunks[k][:half], batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        return time.perf_counter() - t0

    async def picaco(k: int) -> float:
        async with LLMClient(cfg) as client:
            t0 = time.perf_counter()
            await client.embed("st/all-MiniLM-L6-v2", chunks[k][half:])
            return time.perf_counter() - t0

    bare_times, picaco_times = await interleaved(rounds, bare, picaco)
    # half cached: the first half was never encoded through picaco, the second half was
    client = LLMClient(cfg)
    mixed = [f"{t} (round 0)" for t in texts[:200]] + [f"{t} (round 0)" for t in texts[1000:1200]]
    await client.embed("st/all-MiniLM-L6-v2", mixed)
    u = client.usage["embedding"]
    await client.aclose()
    return {"embed_bare_s": min(bare_times), "embed_picaco_s": min(picaco_times),
            "embed_ratio": min(bare_times) / min(picaco_times),
            "embed_median_pair_ratio": statistics.median(b / p for b, p in zip(bare_times, picaco_times)),
            "embed_rounds": rounds,
            "embed_half_cached_encoded": u.samples_miss, "embed_half_cached_hits": u.samples_hit}


async def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="picaco-bench-"))
    reqs = requests_for(args.calls)
    figures: dict = {"calls": args.calls, "in_flight": args.in_flight, "latency_ms": args.latency_ms}

    server = start_server_process(SimServerConfig(latency_ms=args.latency_ms))
    try:
        base = server.openai_base_url
        await bare_openai(base, requests_for(200), args.in_flight)  # warm up both paths
        await through_picaco(client_config(tmp, base, args.in_flight, "warm"), requests_for(200))
        # Best of interleaved rounds: the machine is shared, and the same bare loop's CPU cost per call varies
        # by up to 50% from one round to the next (measured: 1.97-3.07 ms), far more than picaco's own ~0.1 ms
        # per call; a single pair would measure the machine.
        picaco_runs: dict[int, tuple[ClientConfig, list[str]]] = {}

        async def bare(k: int) -> float:
            return await bare_openai(base, reqs, args.in_flight)

        async def picaco(k: int) -> float:
            cfg = client_config(tmp, base, args.in_flight, f"main{k}")
            elapsed, texts, _, _ = await through_picaco(cfg, reqs)
            picaco_runs[k] = (cfg, texts)
            return elapsed

        bare_times, picaco_times = await interleaved(args.rounds, bare, picaco)
        cfg, texts = picaco_runs[args.rounds - 1]  # a filled cache for the second pass
        figures.update(bare_rps=args.calls / min(bare_times), picaco_rps=args.calls / min(picaco_times),
                       bare_rps_rounds=[round(args.calls / x, 1) for x in bare_times],
                       picaco_rps_rounds=[round(args.calls / x, 1) for x in picaco_times],
                       median_pair_ratio=statistics.median(b / p for b, p in zip(bare_times, picaco_times)))
        figures["throughput_ratio"] = figures["picaco_rps"] / figures["bare_rps"]
        print(f"throughput (best of {args.rounds} interleaved rounds): bare AsyncOpenAI {figures['bare_rps']:.0f} req/s, "
              f"picaco {figures['picaco_rps']:.0f} req/s, ratio {figures['throughput_ratio']:.3f} (goal >= 0.90); "
              f"rounds bare {figures['bare_rps_rounds']}, picaco {figures['picaco_rps_rounds']}; "
              f"median of the rounds' ratios {figures['median_pair_ratio']:.3f}")

        figures["layer_cpu_ms_per_call"] = await layer_cost_per_call(tmp, reqs, args.in_flight)
        print(f"picaco's own layer: {figures['layer_cpu_ms_per_call']:.3f} ms of CPU per uncached call "
              f"(against a provider that answers at once)")

        before = len(server.request_log())
        second_s, second_texts, _, _ = await through_picaco(cfg, reqs)
        figures["second_pass_requests"] = len(server.request_log()) - before
        lat = await cached_call_latency(cfg, reqs)
        figures["cached_call_median_ms"] = statistics.median(lat)
        figures["second_pass_s"] = second_s
        assert second_texts == texts
        print(f"second pass: {figures['second_pass_requests']} requests reached the server (goal 0); "
              f"cached call median {figures['cached_call_median_ms']:.3f} ms (goal <= 0.3); whole pass {second_s:.2f} s")
    finally:
        server.stop()

    faulty = start_server_process(SimServerConfig(latency_ms=args.latency_ms, rate_429=0.20, retry_after_s=0.05,
                                                  rate_500=0.10, rate_hang=0.05, hang_s=5.0, seed=1))
    try:
        cfg = client_config(tmp, faulty.openai_base_url, args.in_flight, "faults", timeout_s=1.0,
                            retry=RetryPolicy(max_attempts=12, base_delay_s=0.05, max_delay_s=1.0, max_total_s=120))
        t0 = time.perf_counter()
        _, fault_texts, _, client = await through_picaco(cfg, reqs)
        figures["fault_run_s"] = time.perf_counter() - t0
        log = [json.loads(line) for line in (tmp / "calls-faults.jsonl").read_text().splitlines()]
        figures["fault_run_equal"] = fault_texts == texts
        figures["fault_retries"] = sum(r["retries"] for r in log)
        figures["fault_calls_completed"] = sum(1 for r in log if r["status"] != "error")
        server_log = faulty.request_log()
        injected = {}
        for entry in server_log:
            if entry.get("fault"):
                injected[entry["fault"]] = injected.get(entry["fault"], 0) + 1
        figures["faults_injected"] = injected
        print(f"faults: injected {injected}; {figures['fault_calls_completed']}/{args.calls} calls completed, "
              f"results equal the fault-free run: {figures['fault_run_equal']}, retries in the call log: "
              f"{figures['fault_retries']} ({figures['fault_run_s']:.1f} s)")
    finally:
        faulty.stop()

    figures.update(await embeddings(tmp))
    print(f"embeddings: bare encode {figures['embed_bare_s']:.2f} s, through picaco {figures['embed_picaco_s']:.2f} s, "
          f"ratio {figures['embed_ratio']:.3f} (goal >= 0.9; best of {figures['embed_rounds']} interleaved rounds, "
          f"median of the rounds' "
          f"ratios {figures['embed_median_pair_ratio']:.3f}); half-cached batch of 400 encoded "
          f"{figures['embed_half_cached_encoded']} texts, {figures['embed_half_cached_hits']} from the cache")
    return figures


if __name__ == "__main__":
    result = asyncio.run(main())
    keys = ["throughput_ratio", "bare_rps", "picaco_rps", "second_pass_requests", "cached_call_median_ms", "embed_ratio",
            "fault_run_equal", "fault_retries"]
    print(json.dumps({**{k: result[k] for k in keys}, **{k: v for k, v in result.items() if k not in keys}},
                     default=str))
