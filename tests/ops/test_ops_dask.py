"""Scale-out: the E-step's sampling and judging as shard tasks on a local Dask cluster of worker processes
(prefect-dask) gives the same run as the single-process E-step. Each run has its own cold cache, so the
Dask run does all the work itself; the shards of one step share that cache. Embeddings come from the
simulator here: a local sentence-transformers model gives slightly different floats for different batch
compositions (about 1e-8), which bench/ops.py measures separately."""

from __future__ import annotations

import json

import pytest

from picaco.llm.calllog import paid_calls, read_call_log

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def config(tmp_path, mode: str) -> dict:
    return {"run_name": "dask-eq", "composition": "hh_balance", "prompts": {"demo_family": "hh"},
            "runs_dir": str(tmp_path / mode / "runs"), "models": {"embedding": "sim/embed"},
            "client": {"cache_dir": str(tmp_path / mode / "cache"),
                       "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}},
            "picaco": {"n_prompts": 4, "m1": 2, "m2": 2, "iterations": 2, "noisy_samples": 3, "n_pe_samples": 2,
                       "buckets": 2, "samples_per_bucket": 1, "demos_per_bucket": 1}}


def _state(tmp_path, mode: str, t: int) -> dict:
    state = json.loads((tmp_path / mode / "runs" / "dask-eq" / f"iter_{t:03d}.json").read_text())
    state.pop("usage_by_role")  # how calls were split between processes, not what they returned
    return state


def test_dask_sharded_e_step_equals_single_process(tmp_path):
    from flows.noisy_pool import noisy_pool_flow
    from flows.pipeline import _dask_runner, optimize_steps_flow

    single, dask, threads = config(tmp_path, "single"), config(tmp_path, "dask"), config(tmp_path, "threads")
    for cfg in (single, dask, threads):
        noisy_pool_flow(config=cfg)
    expected = optimize_steps_flow(config=single, e_step_shards=1)
    got = optimize_steps_flow.with_options(task_runner=_dask_runner(2, None))(config=dask, e_step_shards=3)
    in_threads = optimize_steps_flow(config=threads, e_step_shards=2)  # the default thread-pool runner

    assert got == expected and in_threads == expected
    for t in (1, 2):
        assert _state(tmp_path, "dask", t) == _state(tmp_path, "single", t) == _state(tmp_path, "threads", t)
    shards = sorted(p.name for p in (tmp_path / "dask" / "runs" / "dask-eq").glob("iter_001.estep.shard-*-of-3.json"))
    assert shards == [f"iter_001.estep.shard-{k}-of-3.json" for k in range(3)]
    paid = paid_calls(read_call_log(tmp_path / "dask" / "runs" / "dask-eq" / "calls.jsonl"))
    assert paid > 0


def test_separate_hosts_share_only_the_postgres_cache(tmp_path, pg_url, monkeypatch):
    """Three isolated worker processes (own cwd, HOME, cache dirs; ops/dask_hosts.py) run the noisy pool,
    the E-step shards, the merges, the M-steps and the report, sharing only the run store and the Postgres
    cache: the same run as one process on diskcache, no sample paid twice, and a fresh set of workers with
    a new run folder pays nothing (bench/scale.py measures the same with a fresh set of three)."""
    from prefect_dask import DaskTaskRunner

    from flows.noisy_pool import noisy_pool_flow
    from flows.pipeline import optimize_steps_flow
    from ops.dask_hosts import SeparateHosts, duplicate_paid_calls, run_states

    monkeypatch.delenv("PICACO_CACHE_URL", raising=False)
    single = config(tmp_path, "single")
    noisy_pool_flow(config=single)
    optimize_steps_flow(config=single, e_step_shards=1)
    expected = run_states(tmp_path / "single" / "runs" / "dask-eq")

    def on_hosts(name: str, n: int) -> list[dict]:
        raw = config(tmp_path, name)
        del raw["client"]["cache_dir"]  # each worker's own (relative to its cwd), to show nothing lands there
        with SeparateHosts(tmp_path / f"hosts-{name}", n, cache_url=pg_url) as hosts:
            optimize_steps_flow.with_options(task_runner=DaskTaskRunner(address=hosts.address))(
                config=raw, e_step_shards=3, noisy_pool=True)
            report = hosts.report()
        assert run_states(tmp_path / name / "runs" / "dask-eq") == expected
        return report

    first = on_hosts("hosts-a", 3)
    lines = read_call_log(tmp_path / "hosts-a" / "runs" / "dask-eq" / "calls.jsonl")
    assert paid_calls(lines) > 0 and duplicate_paid_calls(lines) == 0
    assert len({h["cwd"] for h in first}) == 3 and all(h["tasks_run"] > 0 for h in first)
    assert all(h["cache_url_set"] and h["cache_dir_files"] == [] and h["cwd_files"] == [] for h in first)
    assert not (tmp_path / "hosts-a" / "cache").exists()

    # a fresh worker (one: the bench reruns on three), fresh folders, a new run folder: only the cache answers
    again = on_hosts("hosts-b", 1)
    rerun = read_call_log(tmp_path / "hosts-b" / "runs" / "dask-eq" / "calls.jsonl")
    assert rerun and paid_calls(rerun) == 0
    assert all(h["cache_dir_files"] == [] for h in again)
