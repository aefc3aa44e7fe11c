"""Flow: Algorithm 1. Per iteration an E-step task and an M-step task; each iteration publishes a
markdown artifact (TC_e, per-value scores, the instruction) and moves a progress artifact. Started
again with the same run_name, it resumes after the last complete step (finished steps return at once
from the run store; repeated calls are answered by the cache)."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from flows._common import artifact_key, resolve_config
from picaco.method.run import RunStore, result_markdown, start_run
from tasks.optimize import e_step_task, final_report_task, m_step_task, noisy_pool_task


@flow(name="picaco-optimize")
def optimize_flow(config_path: str | None = None, config: dict | None = None, run_name: str | None = None) -> dict:
    cfg = resolve_config(config_path, config, run_name)
    raw = cfg.model_dump(mode="json")
    T = cfg.picaco.iterations
    start_run(cfg)  # every input checked before anything is written; a changed resume is refused
    noisy_pool_task(raw)
    done = RunStore(cfg.run_dir).last_complete_iteration()
    progress_id = create_progress_artifact(progress=100.0 * min(done, T) / T, key=artifact_key(cfg.run_name, "progress"),
                                           description=f"PICACO iterations done of {T}")
    for t in range(1, T + 1):
        e_step_task(raw, t)
        summary = m_step_task(raw, t)
        create_markdown_artifact(summary["markdown"], key=artifact_key(cfg.run_name, "iteration", t),
                                 description=f"PICACO iteration {t}: TC_e {summary['best_tc']:.4f}")
        update_progress_artifact(progress_id, progress=100.0 * t / T)
    result = final_report_task(raw)
    create_markdown_artifact(result_markdown(result), key=artifact_key(cfg.run_name, "result"),
                             description="PICACO optimized meta-instruction")
    return result
