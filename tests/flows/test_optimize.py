"""The optimization flow under a Prefect test server, against the in-process simulator."""

from __future__ import annotations

import pytest

from flows._common import artifact_key
from picaco.llm.calllog import paid_calls, read_call_log

pytestmark = pytest.mark.usefixtures("prefect_harness")


def config(tmp_path) -> dict:
    return {"run_name": "flow-run", "composition": "harmlessness", "prompts": {"demo_family": "hh"},
            "runs_dir": str(tmp_path / "runs"), "models": {"embedding": "sim/embed"},
            "client": {"cache_dir": str(tmp_path / "cache"),
                       "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}},
            "picaco": {"n_prompts": 3, "m1": 2, "m2": 2, "iterations": 2, "noisy_samples": 3, "n_pe_samples": 2,
                       "buckets": 2, "samples_per_bucket": 1}}


def test_optimize_flow_runs_publishes_artifacts_and_resumes_for_free(tmp_path):
    from prefect.artifacts import Artifact

    from flows.optimize import optimize_flow

    raw = config(tmp_path)
    result = optimize_flow(config=raw)
    assert result["best_instruction"] and set(result["value_scores"]) == {
        "Non-Toxicity", "Fairness", "Information Safety", "Responsible Uses"}
    for t in (1, 2):
        art = Artifact.get(artifact_key("flow-run", "iteration", t))
        assert art is not None and f"Iteration {t}" in art.data and "TC_e of e^t" in art.data
        assert art.data.count("\n| ") >= t + 1  # one TC_e row per iteration so far
    assert Artifact.get(artifact_key("flow-run", "result")) is not None
    progress = Artifact.get(artifact_key("flow-run", "progress"))
    assert progress is not None and float(progress.data) == pytest.approx(100.0)

    log = tmp_path / "runs" / "flow-run" / "calls.jsonl"
    paid = paid_calls(read_call_log(log))
    again = optimize_flow(config=raw)
    assert paid_calls(read_call_log(log)) == paid
    assert again["best_instruction"] == result["best_instruction"]



def test_the_m_step_draft_task_leaves_the_m_step_nothing_to_pay_for_its_proposals_and_samples(tmp_path):
    """The flow runs the draft beside the E-step (its own client, its own thread); the M-step then finds
    every optimizer call and every p_e sample in the cache."""
    from tasks.optimize import e_step_task, m_step_draft_task, m_step_task, noisy_pool_task

    raw = config(tmp_path)
    noisy_pool_task.fn(raw)
    assert m_step_draft_task.fn(raw, 1) == {"t": 1, "candidates": 3}  # the seed instruction and 2 proposals
    e_step_task.fn(raw, 1)
    log = tmp_path / "runs" / "flow-run" / "calls.jsonl"
    paid_before = paid_calls(read_call_log(log))
    m_step_task.fn(raw, 1)
    assert paid_calls(read_call_log(log)) == paid_before  # nothing new: scoring uses cached samples
    assert m_step_draft_task.fn(raw, 1) == {"t": 1, "candidates": 0}  # a done iteration is not drafted again
