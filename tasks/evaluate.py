"""Tasks of the evaluation flow: thin wrappers over picaco.eval.runner, coarse by design (one task per
evaluated method, never per call). Each takes the evaluation config as a JSON dict; results live in the
evaluation's store (picaco.eval.store), so a re-run task reads its result back. Prefect's own result
caching is off: picaco's call cache and store already make every task idempotent."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from picaco.eval import runner
from picaco.eval.config import EvalConfig
from picaco.eval.report import write_outputs


def _cfg(config: dict) -> EvalConfig:
    return EvalConfig.model_validate(config)


@task(name="eval-judge-probe", cache_policy=NO_CACHE)
def judge_probe_task(config: dict) -> list[dict]:
    """The judge calibration probe before anything spends; fails the flow on an inverted or flat judge."""
    return runner.check_judges(_cfg(config))


@task(name="eval-picaco-instructions", cache_policy=NO_CACHE)
def resolve_picaco_task(config: dict) -> dict[str, str]:
    """Run (or resume) every PICACO optimization the config asks for; job key -> result path."""
    return runner.resolve_picaco_sources(_cfg(config))


@task(name="eval-method", cache_policy=NO_CACHE, task_run_name="eval-{key}")
def evaluate_job_task(config: dict, job: dict, key: str) -> dict:
    """One method on one composition (or one analysis cell): sample, judge, store. Returns its summary."""
    run = runner.run_job(_cfg(config), runner.EvalJob.model_validate(job))
    s = run.summary
    return {"key": run.key, "label": run.label, "composition": run.composition, "overall": s.overall, "cv": s.cv,
            "missing": s.missing, "responses": s.responses, "calls": run.calls()["calls"], "wall_s": run.wall_s}


@task(name="eval-report", cache_policy=NO_CACHE)
def report_task(config: dict) -> dict:
    """Tables, figures and report.md from the stored runs."""
    cfg = _cfg(config)
    return write_outputs(cfg, runner.load_runs(cfg))
