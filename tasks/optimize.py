"""Tasks of the noisy-pool and optimization flows, one per step of Algorithm 1 (the unit Prefect retries
and resumes). Each takes the run config as a JSON dict, runs its step through picaco.method.run (which
checks the run, opens the task's own client, skips a step already done and writes the step's state
atomically), and returns a small JSON summary. Prefect's own result caching is off: picaco's call cache
and run store already make every task idempotent, and Prefect would pickle results."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from picaco.base.config import RunConfig
from picaco.method import run as runner
from picaco.method.result import iteration_markdown, iteration_table


def _cfg(config: dict) -> RunConfig:
    return RunConfig.model_validate(config)


@task(name="noisy-pool", cache_policy=NO_CACHE)
def noisy_pool_task(config: dict) -> dict:
    state = runner.run_noisy_pool(_cfg(config))
    return {"prompts": len(state.pools), "kept": sum(len(p) for p in state.pools.values()),
            "observation_texts": len(state.observation)}


@task(name="e-step", cache_policy=NO_CACHE)
def e_step_task(config: dict, t: int) -> dict:
    state = runner.run_e_step(_cfg(config), t)
    return {"t": t, "responses": state.report.responses, "missing": state.report.missing,
            "conformity": state.report.conformity}


@task(name="e-step-shard", cache_policy=NO_CACHE, task_run_name="e-step-{t}-shard-{shard}-of-{n_shards}")
def e_step_shard_task(config: dict, t: int, shard: int, n_shards: int) -> dict:
    """Sampling and judging of prompts shard, shard+n, ... under e^(t-1): the unit a Dask worker runs."""
    result = runner.run_e_step_shard(_cfg(config), t, shard, n_shards)
    return {"t": t, "shard": shard, "prompts": len(result.fresh), "responses": result.tally.responses,
            "judged": result.tally.judged, "missing": result.tally.missing}


@task(name="e-step-merge", cache_policy=NO_CACHE, task_run_name="e-step-{t}-merge-{n_shards}")
def e_step_merge_task(config: dict, t: int, n_shards: int) -> dict:
    state = runner.merge_e_step_shards(_cfg(config), t, n_shards)
    return {"t": t, "responses": state.report.responses, "missing": state.report.missing,
            "conformity": state.report.conformity}


@task(name="m-step-draft", cache_policy=NO_CACHE, task_run_name="m-step-{t}-draft")
def m_step_draft_task(config: dict, t: int) -> dict:
    """The M-step's proposals and p_e samples of iteration t into the call cache, beside its E-step (they need
    iteration t-1 only): the embedding work overlaps the E-step's calls, and the M-step finds them cached."""
    return {"t": t, "candidates": runner.run_m_step_draft(_cfg(config), t)}


@task(name="m-step", cache_policy=NO_CACHE)
def m_step_task(config: dict, t: int) -> dict:
    """The M-step of iteration t, with what the flow publishes of it: the iteration's Markdown (TC_e so
    far) and its candidates ranked by TC_e."""
    cfg = _cfg(config)
    state = runner.run_m_step(cfg, t)
    history = runner.RunStore(cfg.run_dir).iterations(upto=t)
    return {"t": t, "best_tc": state.best.tc, "best_born": state.best.born,
            "markdown": iteration_markdown(state, history), "table": iteration_table(state),
            "new_candidates": state.mstep.new_unique if state.mstep else 0}


@task(name="final-report", cache_policy=NO_CACHE)
def final_report_task(config: dict) -> dict:
    return runner.run_final_report(_cfg(config)).model_dump(mode="json")
