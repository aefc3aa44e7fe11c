"""tasks/evaluate.py through `.fn` (no Prefect server), on the simulated world: PICACO's run is optimized
by the first task, each job's task stores and summarizes its run, the report task writes from the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_run import small_run_config

from picaco.eval.config import parse_eval_config
from picaco.eval.runner import plan_jobs
from picaco.eval.store import EvalStore
from tasks.evaluate import evaluate_job_task, report_task, resolve_picaco_task


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks_evaluate")
    run = small_run_config(root, run_name="tiny", composition="hh_balance", prompts={"demo_family": "hh"},
                           models={"target": "sim/target", "judge": "sim/judge", "embedding": "sim/embed"})
    (root / "run.yaml").write_text(yaml.safe_dump(run))
    return parse_eval_config({
        "name": "tasks", "methods": ["q", "picaco"], "prompts": {"count": 1},
        "picaco": {"run_config": str(root / "run.yaml")}, "client": run["client"], "out_dir": str(root / "out"),
        "protocol": {"buckets": 1, "samples_per_bucket": 2}}).model_dump(mode="json")


def test_resolve_picaco_task_optimizes_the_run_config_and_names_its_result(raw):
    origins = resolve_picaco_task.fn(raw)
    assert list(origins) == ["main/hh_balance/picaco"]
    result = Path(origins["main/hh_balance/picaco"])
    assert result.name == "result.json" and result.parent.name == "tiny"
    assert json.loads(result.read_text())["best_instruction"]


def test_each_job_task_stores_its_run_and_returns_its_summary(raw):
    cfg = parse_eval_config(raw)
    jobs = plan_jobs(cfg)
    assert [j.method for j in jobs] == ["q", "picaco"]
    store = EvalStore(cfg.eval_dir)
    for job in jobs:
        summary = evaluate_job_task.fn(raw, job.model_dump(mode="json"), job.key)
        run = store.load(job.key)
        assert run is not None and summary["key"] == job.key == run.key
        assert (summary["overall"], summary["responses"], summary["missing"]) == (
            run.summary.overall, run.summary.responses, run.summary.missing)
        assert summary["responses"] > 0 and summary["calls"] == run.calls()["calls"]
    picaco = store.load("main/hh_balance/picaco")
    assert picaco.info["instruction"] == json.loads(
        (Path(raw["picaco"]["run_config"]).parent / "runs" / "tiny" / "result.json").read_text())["best_instruction"]


def test_report_task_writes_the_report_of_the_stored_runs(raw):
    out = report_task.fn(raw)
    report = Path(out["report"]).read_text()
    assert "| PICACO |" in report and "| Q |" in report
    assert [row["method"] for row in out["summary"]] == ["q", "picaco"]
    assert all(Path(f).is_file() for f in out["files"])
