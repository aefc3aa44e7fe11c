"""Flow `picaco-evaluate`: PICACO and the paper's baselines on held-out prompts (App. C.2-C.3), plus the
analyses of Sec. 4.3 when configured. One task resolves PICACO's instructions (optimizing a run config
if asked) after the judge calibration probe, then one task per job (method x composition, or analysis cell), then the report. Publishes
the Markdown report, the summary table and the figures (PNG as data URLs) as Prefect artifacts.

    from flows.evaluate import evaluate_flow
    evaluate_flow(config_path="configs/evaluate_demo.yaml")
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import cast
from uuid import UUID

from prefect import flow
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows._common import artifact_key, resolve_model
from picaco.eval.config import HIDDEN_LOCS, EvalConfig
from picaco.eval.runner import plan_jobs
from tasks.evaluate import evaluate_job_task, judge_probe_task, report_task, resolve_picaco_task


def resolve_eval_config(config_path: str | None, config: dict | None, name: str | None) -> EvalConfig:
    return resolve_model(EvalConfig, config_path, config, {"name": name}, hidden_locs=HIDDEN_LOCS)


def _summary_table(rows: list[dict]) -> list[dict]:
    def r3(x):
        return None if x is None else round(x, 4)

    return [{"method": r["label"], "composition": r["composition"], "overall": r3(r["overall"]), "cv": r3(r["cv"]),
             "missing": r["missing"], "responses": r["responses"], "calls": r["provider_calls"], "wall_s": r["wall_s"]}
            for r in rows]


@flow(name="picaco-evaluate")
def evaluate_flow(config_path: str | None = None, config: dict | None = None, name: str | None = None) -> dict:
    cfg = resolve_eval_config(config_path, config, name)
    raw = cfg.model_dump(mode="json")
    jobs = plan_jobs(cfg)
    judge_probe_task(raw)
    resolve_picaco_task(raw)
    progress_id = cast(UUID, create_progress_artifact(progress=0.0, key=artifact_key(cfg.name, "eval-progress"),
                                           description=f"evaluation jobs done of {len(jobs)}"))
    for k, job in enumerate(jobs, 1):
        evaluate_job_task(raw, job.model_dump(mode="json"), job.key)
        update_progress_artifact(progress_id, progress=100.0 * k / len(jobs))
    outputs = report_task(raw)
    create_markdown_artifact(Path(outputs["report"]).read_text(encoding="utf-8"), key=artifact_key(cfg.name, "report"),
                             description=f"evaluation report: {cfg.name}")
    if outputs["summary"]:
        create_table_artifact(_summary_table(outputs["summary"]), key=artifact_key(cfg.name, "summary"),
                              description="overall conformity, CV, missing judge scores and calls by method")
    for fig, path in outputs["figures"].items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        create_image_artifact(image_url=f"data:image/png;base64,{data}", key=artifact_key(cfg.name, "figure", fig),
                              description=f"{fig} ({path})")
    return outputs
