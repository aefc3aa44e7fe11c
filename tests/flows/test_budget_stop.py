"""A budget stop inside a flow's step says what is left to do, as `optimize()` does (picaco/llm/budget.py)."""

from __future__ import annotations

import pytest
from tiny_run import small_run_config

from picaco.base.config import RunConfig
from picaco.llm.budget import BudgetExceeded
from picaco.llm.calllog import read_call_log
from picaco.method.run import optimize

pytestmark = pytest.mark.usefixtures("prefect_harness")


def unpriced_run(root, **client) -> dict:
    """Every chat role on `loc`, a simulator the price table does not know (so its tokens count)."""
    raw = small_run_config(root, models={"target": "loc/target", "judge": "loc/judge", "optimizer": "loc/optimizer",
                                         "embedding": "sim/embed"}, picaco={"judge_probe": False, "held_out": 0})
    raw["client"]["providers"]["loc"] = {"kind": "sim", "options": {"world": "values"}}
    raw["client"].update(client)
    return raw


def chat_tokens(log) -> int:
    return sum(line["prompt_tokens"] + line["completion_tokens"] for line in read_call_log(log)
               if line.get("kind") == "call" and line.get("op") == "chat")


def test_a_budget_stop_in_a_flow_step_says_what_is_left_to_do(tmp_path):
    from flows.optimize import optimize_flow
    from tasks.optimize import e_step_task

    full = RunConfig.model_validate(unpriced_run(tmp_path / "full"))
    optimize(full)
    tokens = chat_tokens(full.run_dir / "calls.jsonl")
    raw = unpriced_run(tmp_path / "flow", budget_tokens=tokens // 2)
    with pytest.raises(BudgetExceeded) as stop:
        optimize_flow(config=raw)
    msg = str(stop.value)
    assert msg.startswith("budget reached: spent ") and f"of client.budget_tokens {tokens // 2}" in msg
    assert "; left to do: " in msg and "iteration 1 of 1" in msg and msg.count("left to do") == 1
    assert msg.endswith("run again with a larger budget to resume (what was paid is cached)")
    # one step on its own (the task's function, no flow) says the same
    with pytest.raises(BudgetExceeded, match=r"; left to do: .*iteration 1 of 1.*the final report; run again"):
        e_step_task.fn(raw, 1)
