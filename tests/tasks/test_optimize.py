"""tasks/optimize.py through `.fn` (no Prefect server): the step tasks, called in the order the optimize
flow calls them, leave the run store a library `optimize()` would, and return summaries of what they stored."""

from __future__ import annotations

import pytest
from tiny_run import small_run_config

from picaco.base.errors import RunStateError
from picaco.config import parse_run_config
from picaco.method.run import RunStore, optimize
from tasks.optimize import (
    e_step_merge_task,
    e_step_shard_task,
    e_step_task,
    final_report_task,
    m_step_task,
    noisy_pool_task,
)

T = 2


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("tasks_optimize")


def _raw(root, run_name):
    return small_run_config(root, run_name=run_name, picaco={"iterations": T})


@pytest.fixture(scope="module")
def stepped(root):
    """A run made of the tasks, one per step, and what each returned."""
    raw = _raw(root, "by-tasks")
    out = {"noisy": noisy_pool_task.fn(raw)}
    for t in range(1, T + 1):
        out[f"e{t}"] = e_step_task.fn(raw, t)
        out[f"m{t}"] = m_step_task.fn(raw, t)
    out["final"] = final_report_task.fn(raw)
    return raw, out


def test_noisy_pool_task_summarizes_the_stored_pool(stepped):
    raw, out = stepped
    noisy = RunStore(parse_run_config(raw).run_dir).load_noisy()
    assert out["noisy"] == {"prompts": 3, "kept": sum(len(p) for p in noisy.pools.values()),
                            "observation_texts": len(noisy.observation)}
    assert out["noisy"]["kept"] == 3 * raw["picaco"]["m2"]


def test_e_and_m_step_tasks_return_what_the_store_holds(stepped):
    raw, out = stepped
    store = RunStore(parse_run_config(raw).run_dir)
    for t in range(1, T + 1):
        report = store.load_estep(t).report
        assert out[f"e{t}"] == {"t": t, "responses": report.responses, "missing": report.missing,
                                "conformity": report.conformity}
        assert report.responses > 0
        it = store.load_iteration(t)
        m = out[f"m{t}"]
        assert (m["t"], m["best_tc"], m["best_born"], m["new_candidates"]) == (t, it.best.tc, it.best.born,
                                                                               it.mstep.new_unique)
        assert f"## Iteration {t}" in m["markdown"] and it.best.instruction.splitlines()[0] in m["markdown"]
        assert len(m["table"]) == len(it.candidates) and m["table"][0]["rank"] == 1
        assert [row["best"] for row in m["table"]].count(True) >= 1


def test_the_tasks_give_the_result_of_one_optimize_call(stepped, root):
    raw, out = stepped
    whole = optimize(parse_run_config(_raw(root, "whole"))).model_dump(mode="json")
    assert out["final"]["best_instruction"] == whole["best_instruction"]
    assert {k: v for k, v in out["final"].items() if k != "run_name"} == {k: v for k, v in whole.items()
                                                                          if k != "run_name"}
    assert out["final"]["run_name"] == "by-tasks" and len(out["final"]["history"]) == T


def test_shard_tasks_and_their_merge_give_the_single_process_e_step(stepped, root):
    raw, out = stepped
    sharded = _raw(root, "sharded")
    noisy_pool_task.fn(sharded)
    shards = [e_step_shard_task.fn(sharded, 1, k, 2) for k in range(2)]
    assert [s["shard"] for s in shards] == [0, 1] and sum(s["prompts"] for s in shards) == 3
    assert sum(s["responses"] for s in shards) == out["e1"]["responses"]
    assert e_step_merge_task.fn(sharded, 1, 2) == out["e1"]
    one = RunStore(parse_run_config(raw).run_dir).load_estep(1)
    merged = RunStore(parse_run_config(sharded).run_dir).load_estep(1)
    assert merged.pools == one.pools


def test_steps_out_of_order_are_refused_with_one_line(root):
    raw = _raw(root, "out-of-order")
    with pytest.raises(RunStateError):  # the run was never started
        e_step_task.fn(raw, 1)
    noisy_pool_task.fn(raw)
    with pytest.raises(RunStateError, match="has no E-step yet"):
        m_step_task.fn(raw, 1)
    with pytest.raises(RunStateError, match="iteration 1 .* is not complete"):
        e_step_task.fn(raw, 2)
    with pytest.raises(RunStateError, match="has not finished iteration 2"):
        final_report_task.fn(raw)
    with pytest.raises(ValueError, match="shard must be within"):
        e_step_shard_task.fn(raw, 1, 2, 2)


def test_a_finished_m_step_is_returned_even_when_its_e_step_file_was_deleted(root):
    # deleting a damaged state file is the documented way out (the step is recomputed from the cache)
    raw = _raw(root, "estep-gone")
    noisy_pool_task.fn(raw)
    e_step_task.fn(raw, 1)
    first = m_step_task.fn(raw, 1)
    (parse_run_config(raw).run_dir / "iter_001.estep.json").unlink()
    assert m_step_task.fn(raw, 1) == first
