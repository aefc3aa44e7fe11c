"""Flow: Algorithm 1. Per iteration an E-step task (or one task per shard of X, then a merge), beside it
the M-step's draft (proposals and p_e samples, which need iteration t-1 only), and an M-step task; each
iteration publishes a markdown artifact (TC_e, per-value scores, the instruction) and a table of its
candidates, and moves a progress artifact. Started again with the same config, every
finished step returns from the run store.

    from flows.optimize import optimize_flow
    optimize_flow(config_path="configs/demo.yaml")
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect import flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows._common import artifact_key, resolve_config
from picaco.base.config import RunConfig
from picaco.method.result import OptimizeResult, result_markdown
from picaco.method.run import RunStore, start_run
from tasks.optimize import (
    e_step_merge_task,
    e_step_shard_task,
    e_step_task,
    final_report_task,
    m_step_draft_task,
    m_step_task,
    noisy_pool_task,
)


def optimize_steps(config: dict, e_step_shards: int = 1, noisy_pool: bool = False) -> dict:
    """Iterations 1..T and the final report of a run whose noisy pool is done (or done first, as a task,
    with `noisy_pool`), as tasks: the loop of the optimize flow and of the pipeline."""
    cfg = RunConfig.model_validate(config)
    T = cfg.picaco.iterations
    start_run(cfg)  # every input checked before anything is written; a changed resume is refused
    done = RunStore(cfg.run_dir).last_complete_iteration()
    progress_id = cast(UUID, create_progress_artifact(progress=100.0 * min(done, T) / T, key=artifact_key(cfg.run_name, "progress"),
                                           description=f"PICACO iterations done of {T}"))
    # Sharded, every step goes to the flow's task runner (threads, or Dask workers): on a cluster the merge,
    # the M-step and the report then run on the workers, which hold the cache's credentials, and the flow-run
    # process makes no call. Unsharded, each step runs in the flow's process.
    def step(task, *args):
        return task.submit(*args).result() if e_step_shards > 1 else task(*args)

    if noisy_pool:
        step(noisy_pool_task, config)
    for t in range(1, T + 1):
        # the M-step's proposals and p_e samples need iteration t-1 only: drafted beside the E-step, so its
        # embedding overlaps the E-step's calls; the M-step then finds them in the call cache
        draft = m_step_draft_task.submit(config, t)
        if e_step_shards > 1:
            futures = [e_step_shard_task.submit(config, t, k, e_step_shards) for k in range(e_step_shards)]
            for f in futures:
                f.result()
            step(e_step_merge_task, config, t, e_step_shards)
        else:
            e_step_task(config, t)
        draft.result()
        summary = step(m_step_task, config, t)
        create_markdown_artifact(summary["markdown"], key=artifact_key(cfg.run_name, "iteration", t),
                                 description=f"PICACO iteration {t}: TC_e {summary['best_tc']:.4f}")
        create_table_artifact(summary["table"], key=artifact_key(cfg.run_name, "iteration", t, "table"),
                              description=f"PICACO iteration {t}: candidates ranked by TC_e")
        update_progress_artifact(progress_id, progress=100.0 * t / T)
    result = step(final_report_task, config)
    create_markdown_artifact(result_markdown(OptimizeResult.model_validate(result)),
                             key=artifact_key(cfg.run_name, "result"), description="PICACO optimized meta-instruction")
    return result


@flow(name="picaco-optimize")
def optimize_flow(config_path: str | None = None, config: dict | None = None, run_name: str | None = None) -> dict:
    raw = resolve_config(config_path, config, run_name).model_dump(mode="json")
    noisy_pool_task(raw)
    return optimize_steps(raw)
