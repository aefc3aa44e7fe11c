"""picaco's judge calibration probe: a judge on the stated scale passes, one on the flipped scale stops the
run before any target call (issue 13, part 2)."""

from __future__ import annotations

import asyncio
import json

import pytest

from picaco.base.errors import PicacoError
from picaco.config import parse_run_config
from picaco.llm.calllog import paid_calls, read_call_log
from picaco.llm.client import LLMClient
from picaco.method.context import RunContext
from picaco.method.probe import canned_pairs, probe_judge
from picaco.method.run import RunStore, optimize
from picaco.sim.world_prompts import harm_scale
from picaco.templates import render_value_judge
from picaco.values import list_compositions, load_composition


def config(tmp_path, world="values", composition="harmlessness", **picaco) -> dict:
    return {"run_name": "probe", "composition": composition, "prompts": {"demo_family": "hh"},
            "runs_dir": str(tmp_path / "runs"), "models": {"embedding": "sim/embed"},
            "client": {"cache_dir": str(tmp_path / "cache"),
                       "providers": {"sim": {"kind": "sim", "options": {"world": world}}}},
            "picaco": {"n_prompts": 2, "m1": 2, "m2": 2, "iterations": 1, "noisy_samples": 2, "n_pe_samples": 2,
                       "buckets": 1, "samples_per_bucket": 1, "held_out": 0, **picaco}}


def roles(cfg) -> set[str]:
    return {line.get("role") for line in read_call_log(cfg.run_dir / "calls.jsonl")}


def test_the_harm_wording_states_which_end_is_harmful_and_the_world_follows_it():
    comp = load_composition("harmlessness")
    prompt = render_value_judge(comp.values, "harm", "q", "r")
    assert "1 = not harmful at all, 5 = extremely harmful" in prompt
    assert harm_scale(prompt)
    assert not harm_scale(prompt.replace("1 = not harmful at all, 5 = extremely harmful",
                                         "1 = extremely harmful, 5 = not harmful at all"))
    assert not harm_scale(render_value_judge(comp.values, "quality", "q", "r"))


def test_the_normal_world_passes_and_the_probe_is_recorded(tmp_path):
    cfg = parse_run_config(config(tmp_path))
    result = optimize(cfg)
    probe = json.loads((cfg.run_dir / "judge_probe.json").read_text())
    assert probe["variant"] == "harm"
    assert {v: p["status"] for v, p in probe["values"].items()} == {
        "Non-Toxicity": "ok", "Fairness": "ok", "Information Safety": "ok", "Responsible Uses": "ok"}
    assert all(p["conforming"] > p["violating"] for p in probe["values"].values())
    assert result.judge_probe == probe
    assert json.loads((cfg.run_dir / "result.json").read_text())["judge_probe"] == probe


def test_a_flipped_judge_is_stopped_before_any_target_call(tmp_path):
    cfg = parse_run_config(config(tmp_path, world="values-harm-flipped"))
    with pytest.raises(PicacoError, match="judge probe failed before any target call") as err:
        optimize(cfg)
    message = str(err.value)
    assert "\n" not in message and "picaco.judge_probe: false" in message
    for value in ("Non-Toxicity", "Fairness", "Information Safety", "Responsible Uses"):
        assert f"{value} inverted" in message
    assert roles(cfg) == {"judge"}  # the probe's calls only: no target, embedding or optimizer call
    assert RunStore(cfg.run_dir).load_noisy() is None
    probe = json.loads((cfg.run_dir / "judge_probe.json").read_text())
    assert all(p["status"] == "inverted" for p in probe["values"].values())


def test_switched_off_the_flipped_judge_runs_unchecked(tmp_path):
    cfg = parse_run_config(config(tmp_path, world="values-harm-flipped", judge_probe=False))
    result = optimize(cfg)
    assert result.judge_probe is None and not (cfg.run_dir / "judge_probe.json").exists()
    assert "target" in roles(cfg)


def test_a_rerun_of_the_probe_is_answered_by_the_cache(tmp_path):
    cfg = parse_run_config(config(tmp_path, world="values-harm-flipped"))
    paid = []
    for _ in range(2):
        with pytest.raises(PicacoError, match="judge probe failed"):
            optimize(cfg)
        paid.append(paid_calls(read_call_log(cfg.run_dir / "calls.jsonl")))
    assert paid[0] >= 8 and paid[1] == paid[0]


@pytest.mark.parametrize("name", list_compositions())
def test_every_bundled_value_has_a_canned_pair_the_normal_judge_orders_correctly(tmp_path, name):
    cfg = parse_run_config(config(tmp_path, composition=name))
    comp = load_composition(name)
    assert {v.name for v in comp.values} <= set(canned_pairs())

    async def run():
        async with LLMClient(cfg.client) as client:
            ctx = RunContext(config=cfg, composition=comp, prompts=[], client=client)
            return await probe_judge(ctx)

    probe = asyncio.run(run())
    assert {v: p.status for v, p in probe.values.items()} == {v.name: "ok" for v in comp.values}
