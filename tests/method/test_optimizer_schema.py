"""picaco.optimizer_schema: which providers get the optimizer's reply schema, and a run whose optimizer (the
simulator server, which honours the schema) answers only in JSON proposes what the paper's tagged reply does."""

from __future__ import annotations

import json

import pytest

from picaco.config import parse_run_config
from picaco.demo import calls_by_role
from picaco.llm.cache import open_cache
from picaco.llm.calllog import read_call_log
from picaco.method.picaco import optimizer_schema
from picaco.method.run import RunStore, optimize
from picaco.sim.engine import schema_reply


def config(tmp_path, optimizer: str, providers: dict, mode: str = "auto", name: str = "r"):
    return parse_run_config({
        "run_name": name, "composition": "confucianism", "prompts": {"demo_family": "schwartz"},
        "runs_dir": str(tmp_path / "runs"), "models": {"embedding": "sim/embed", "optimizer": optimizer},
        "client": {"cache_dir": str(tmp_path / "cache"),
                   "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}, **providers}},
        "picaco": {"n_prompts": 2, "m1": 2, "m2": 2, "iterations": 1, "noisy_samples": 2, "n_pe_samples": 2,
                   "buckets": 1, "samples_per_bucket": 2, "held_out": 0, "judge_probe": False,
                   "optimizer_schema": mode}})


@pytest.mark.parametrize("optimizer,providers,mode,on", [
    ("sim/optimizer", {}, "auto", False),  # the simulator keeps the paper's free text
    ("openai/gpt-4o", {}, "auto", False),  # and so does a hosted API
    ("local/smol", {"local": {"kind": "llamacpp", "base_url": "http://127.0.0.1:9/v1"}}, "auto", True),
    ("vllm/m", {}, "auto", True),
    ("ollama/m", {}, "auto", True),
    ("vllm/m", {"vllm": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                         "options": {"schema_form": "none"}}}, "auto", False),  # told it takes no schema
    ("sim/optimizer", {}, "on", True),
    ("vllm/m", {}, "off", False),
])
def test_which_optimizers_are_asked_for_the_schema(tmp_path, optimizer, providers, mode, on):
    schema = optimizer_schema(config(tmp_path, optimizer, providers, mode))
    assert (schema is not None) == on
    if on:
        assert json.loads(schema)["required"] == ["instruction"]


def test_the_simulator_answers_the_schema_with_the_tagged_instruction():
    schema = {"type": "object", "properties": {"instruction": {"type": "string"}}, "required": ["instruction"]}
    assert json.loads(schema_reply("Sure:\n<INS>Be kind.</INS>", schema)) == {"instruction": "Be kind."}
    assert schema_reply("<INS>Be kind.</INS>", None) == "<INS>Be kind.</INS>"
    judge = {"type": "object", "required": ["Benevolence"]}
    assert schema_reply('{"Benevolence": 4}', judge) == '{"Benevolence": 4}'


def test_a_run_whose_optimizer_answers_json_proposes_what_the_tagged_replies_propose(tmp_path, make_server):
    """The same prompt text with and without the schema: the simulator draws the same rewrite, once as
    <INS> tags, once as {"instruction": ...} only. Both runs get every slot's instruction; the schema is in
    the optimizer's cache key, so the second run over the same cache pays the optimizer again and nothing else."""
    server = make_server(world="values")
    # named vllm: a self-hosted engine, so `auto` sends the schema (json_object form) to the simulator server
    providers = {"vllm": {"kind": "openai", "base_url": server.openai_base_url}}
    free = config(tmp_path, "vllm/optimizer", providers, mode="off", name="free")
    schema = config(tmp_path, "vllm/optimizer", providers, mode="auto", name="schema")
    assert optimizer_schema(schema) is not None
    results = [optimize(free), optimize(schema)]
    reports = [RunStore(c.run_dir).load_iteration(1).mstep for c in (free, schema)]
    assert [r.new_unique for r in reports] == [2, 2] and [r.skipped for r in reports] == [[], []]
    assert [r.optimizer_attempts for r in reports] == [2, 2]  # no slot needed a second attempt
    candidates = [[c.instruction for c in RunStore(c.run_dir).load_iteration(1).candidates] for c in (free, schema)]
    assert candidates[0] == candidates[1]
    assert results[0].best_instruction == results[1].best_instruction
    paid = calls_by_role(schema.run_dir / "calls.jsonl")
    assert paid["optimizer"]["calls"] == 2
    assert sum(u["calls"] for role, u in paid.items() if role != "optimizer") == 0
    replies = [optimizer_replies(c) for c in (free, schema)]
    assert all("<INS>" in r for r in replies[0])
    assert [set(json.loads(r)) for r in replies[1]] == [{"instruction"}] * 2  # no tags: JSON alone


def optimizer_replies(cfg) -> list[str]:
    """What the server answered the run's paid optimizer calls (from the cache, by the call lines' keys)."""
    keys = [line["key"] for line in read_call_log(cfg.run_dir / "calls.jsonl")
            if line.get("kind") == "call" and line.get("role") == "optimizer"]
    cache = open_cache(cfg.client.cache_dir)
    try:
        return [cache.get_sample(k)["text"] for k in keys]
    finally:
        cache.close()
