"""Tasks of the noisy-pool and optimization flows. Each takes the run config as a JSON dict, does one
step through picaco.method.run (which writes the step's state atomically and skips a step already
done), and returns a small JSON summary. Prefect's own result caching is off: picaco's call cache and
run store already make every task idempotent, and Prefect would pickle results."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from picaco.base.config import RunConfig
from picaco.method import run as runner


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


@task(name="m-step", cache_policy=NO_CACHE)
def m_step_task(config: dict, t: int) -> dict:
    cfg = _cfg(config)
    state = runner.run_m_step(cfg, t)
    history = runner.RunStore(cfg.run_dir).iterations()
    return {"t": t, "best_tc": state.best.tc, "best_born": state.best.born,
            "markdown": runner.iteration_markdown(state, history),
            "new_candidates": state.mstep.new_unique if state.mstep else 0}


@task(name="final-report", cache_policy=NO_CACHE)
def final_report_task(config: dict) -> dict:
    return runner.run_final_report(_cfg(config))
