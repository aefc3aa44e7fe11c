"""The run's spending cap (picaco/llm/budget.py): client.budget_usd and client.budget_tokens stop a run
before a call that could pass them, resumably; a larger budget resumes and pays only for the rest."""

from __future__ import annotations

import json

import pytest
import yaml
from tiny_run import small_run_config
from typer.testing import CliRunner

from picaco.base.config import RunConfig
from picaco.cli import app
from picaco.config import load_run_config
from picaco.llm.budget import BudgetExceeded, Spent, prompt_token_bound, spent_in_log
from picaco.llm.calllog import read_call_log
from picaco.llm.request import ChatRequest
from picaco.method.run import optimize


def local_run(root, **client) -> dict:
    """The tiny run with every chat role on `loc`, a simulator the price table does not know (unpriced,
    like a local engine), and embeddings in-process."""
    raw = small_run_config(root, models={"target": "loc/target", "judge": "loc/judge", "optimizer": "loc/optimizer",
                                         "embedding": "sim/embed"})
    raw["client"]["providers"]["loc"] = {"kind": "sim", "options": {"world": "values"}}
    raw["client"].update(client)
    return raw


def write_yaml(path, raw: dict):
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def half_written(root) -> list:
    return [p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".tmp")
                                                          or (p.suffix == ".json" and p.stat().st_size == 0))]


def config(raw: dict) -> RunConfig:
    return RunConfig.model_validate(raw)


def chat_tokens(log) -> int:
    return sum(line["prompt_tokens"] + line["completion_tokens"] for line in read_call_log(log)
               if line.get("kind") == "call" and line.get("op") == "chat")


def paid_calls(log) -> int:
    return sum(1 for line in read_call_log(log) if line.get("kind") == "call")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    cfg = config(local_run(root))
    result = optimize(cfg)
    log = cfg.run_dir / "calls.jsonl"
    return result, chat_tokens(log), paid_calls(log)


def test_the_bound_of_a_call_is_its_bytes_plus_the_template_and_its_completions():
    req = ChatRequest.of("loc/target", "Be brief.", "héllo", role="target", max_tokens=7)
    texts = [m.content for m in req.messages]
    assert prompt_token_bound(texts) == len("Be brief.") + len("héllo".encode()) + 64 + 2 * 8


def test_a_token_budget_stops_before_the_call_that_could_pass_it_and_a_larger_one_resumes(tmp_path, uninterrupted):
    full, tokens, calls = uninterrupted
    raw = local_run(tmp_path, budget_tokens=tokens // 2)
    with pytest.raises(BudgetExceeded) as ei:
        optimize(config(raw))
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("budget reached: spent ") and f"of client.budget_tokens {tokens // 2}" in msg
    assert "left to do: " in msg and "the final report" in msg and "run again with a larger budget" in msg
    log = tmp_path / "runs" / "r" / "calls.jsonl"
    spent_first = chat_tokens(log)
    assert 0 < spent_first <= tokens // 2  # never past the cap
    assert not (tmp_path / "runs" / "r" / "result.json").exists()
    assert half_written(tmp_path) == []

    # the same budget again: what was spent is read back from the call log, so it stops at once
    with pytest.raises(BudgetExceeded):
        optimize(config(raw))
    assert chat_tokens(log) == spent_first

    raw["client"]["budget_tokens"] = tokens * 2
    resumed = optimize(config(raw))
    assert resumed.best_instruction == full.best_instruction and resumed.best_tc == full.best_tc
    # the rest only: what both invocations paid is what the uninterrupted run paid
    assert chat_tokens(log) == tokens and paid_calls(log) == calls


def test_a_usd_budget_counts_priced_calls(tmp_path, uninterrupted):
    prices = tmp_path / "prices.yaml"
    prices.write_text('"loc/*": {input: 1.0, output: 2.0}\n')
    _, tokens, _ = uninterrupted
    raw = local_run(tmp_path, prices_path=str(prices), budget_usd=tokens / 4 / 1e6)
    with pytest.raises(BudgetExceeded, match=r"^budget reached: spent \$[0-9.]+ of client.budget_usd"):
        optimize(config(raw))
    lines = [x for x in read_call_log(tmp_path / "runs" / "r" / "calls.jsonl") if x.get("kind") == "call"]
    assert sum(x["cost_usd"] for x in lines) <= tokens / 4 / 1e6
    spent = spent_in_log(tmp_path / "runs" / "r" / "calls.jsonl")
    assert spent.tokens == 0 and spent.calls == len(lines) and spent.usd > 0


def test_a_budget_smaller_than_one_call_is_one_line_before_any_call(tmp_path):
    cfg_path = write_yaml(tmp_path / "run.yaml", local_run(tmp_path, budget_tokens=50))
    seen = CliRunner().invoke(app, ["optimize", "--config", str(cfg_path)])
    assert seen.exit_code not in (0, None) and not isinstance(seen.exception, BudgetExceeded)
    lines = [line for line in seen.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), seen.stderr
    errors = lines
    assert "client.budget_tokens 50 is smaller than one call" in errors[0] and "nothing was spent" in errors[0]
    assert paid_calls(tmp_path / "runs" / "r" / "calls.jsonl") == 0
    assert half_written(tmp_path) == []


def test_budget_fields_are_checked_and_a_budget_change_resumes(tmp_path):
    for bad in ({"budget_usd": 0}, {"budget_usd": -1.0}, {"budget_tokens": 0}, {"budget_tokens": "many"}):
        with pytest.raises(Exception, match="budget_"):
            config(local_run(tmp_path, **bad))
    path = write_yaml(tmp_path / "a.yaml", local_run(tmp_path, budget_tokens=10**9))
    assert load_run_config(path).client.budget_tokens == 10**9
    assert spent_in_log(tmp_path / "missing.jsonl") == Spent()
    log = tmp_path / "calls.jsonl"
    log.write_text("\n".join(json.dumps(x) for x in [
        {"kind": "call", "op": "chat", "prompt_tokens": 3, "completion_tokens": 4, "cost_usd": None},
        {"kind": "call", "op": "embed", "prompt_tokens": 9, "completion_tokens": 0, "cost_usd": None},
        {"kind": "call", "op": "chat", "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0.5},
        {"kind": "chat", "prompt_tokens": 100, "completion_tokens": 100}]) + "\n")
    assert spent_in_log(log) == Spent(usd=0.5, tokens=7, calls=3)
