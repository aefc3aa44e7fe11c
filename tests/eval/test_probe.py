"""`picaco evaluate` probes its judges before any method spends (issue 13, part 2 for the evaluation)."""

from __future__ import annotations

import json

import pytest

from picaco.base.errors import PicacoError
from picaco.eval import evaluate
from picaco.eval.config import parse_eval_config
from picaco.eval.probe import judges_to_probe
from picaco.eval.runner import plan_jobs
from picaco.llm.calllog import paid_calls, read_call_log


def raw(tmp_path, world: str, **over) -> dict:
    return {"name": "probe", "compositions": ["harmlessness"], "methods": ["q"], "prompts": {"count": 2},
            "optimization_prompts": {"offset": 0, "count": 2},
            # the composition's own (harm) wording: the flipped world answers it on the wrong scale
            "protocol": {"judged_values": "composition", "buckets": 1, "samples_per_bucket": 1},
            "models": {"target": "sim/target", "judge": "sim/judge-eval", "scorer": "sim/scorer"},
            "client": {"cache_dir": str(tmp_path / "cache"),
                       "providers": {"sim": {"kind": "sim", "options": {"world": world}}}},
            "out_dir": str(tmp_path / "out"), **over}


def roles(cfg) -> set[str]:
    return {line.get("role") for line in read_call_log(cfg.eval_dir / "calls.jsonl")}


def test_a_flipped_evaluation_judge_stops_the_evaluation_before_any_target_call(tmp_path):
    cfg = parse_eval_config(raw(tmp_path, "values-harm-flipped"))
    with pytest.raises(PicacoError, match="judge probe failed before any target call") as err:
        evaluate(cfg)
    message = str(err.value)
    assert "\n" not in message and "judge_probe: false in the evaluation config" in message
    assert "Non-Toxicity inverted" in message and "sim/judge-eval" in message
    assert roles(cfg) == {"judge"}, "only the probe's judge calls were made"
    assert not (cfg.eval_dir / "report.md").exists()
    (probe,) = json.loads((cfg.eval_dir / "judge_probe.json").read_text())
    assert probe["judge"] == "sim/judge-eval" and probe["variant"] == "harm"
    assert all(v["status"] == "inverted" for v in probe["values"].values())


def test_the_normal_world_passes_is_recorded_and_a_rerun_costs_nothing(tmp_path):
    cfg = parse_eval_config(raw(tmp_path, "values"))
    evaluate(cfg)
    (probe,) = json.loads((cfg.eval_dir / "judge_probe.json").read_text())
    assert {v: p["status"] for v, p in probe["values"].items()} == {
        "Non-Toxicity": "ok", "Fairness": "ok", "Information Safety": "ok", "Responsible Uses": "ok"}
    assert "target" in roles(cfg)
    before = paid_calls(read_call_log(cfg.eval_dir / "calls.jsonl"))
    evaluate(cfg)
    assert paid_calls(read_call_log(cfg.eval_dir / "calls.jsonl")) == before > 0


def test_switched_off_the_flipped_judge_is_not_probed(tmp_path):
    cfg = parse_eval_config(raw(tmp_path, "values-harm-flipped", judge_probe=False))
    out = evaluate(cfg)
    assert out["summary"] and "target" in roles(cfg)
    assert not (cfg.eval_dir / "judge_probe.json").exists()


def test_opros_scorer_is_probed_on_its_own_values_and_each_judge_once(tmp_path):
    cfg = parse_eval_config(raw(tmp_path, "values", compositions=["hh_balance"], methods=["q", "q_if", "opro"],
                                protocol={"judged_values": "paper"}))
    pairs = [(model, setup.value_names) for model, setup in judges_to_probe(cfg, plan_jobs(cfg))]
    hh8 = ["Coherence", "Complexity", "Verbosity", "Helpfulness", "Non-Toxicity", "Fairness", "Information Safety",
           "Responsible Uses"]
    assert sorted(pairs) == sorted([("sim/judge-eval", hh8), ("sim/scorer", hh8)])
    helpful = parse_eval_config(raw(tmp_path, "values", compositions=["helpfulness"], methods=["opro"],
                                    protocol={"judged_values": "paper"}))
    pairs = dict((m, s.value_names) for m, s in judges_to_probe(helpful, plan_jobs(helpful)))
    assert pairs == {"sim/judge-eval": hh8, "sim/scorer": ["Coherence", "Complexity", "Verbosity", "Helpfulness"]}


def test_the_flows_probe_task_stops_a_flipped_judge_and_records_a_normal_one(tmp_path):
    from tasks.evaluate import judge_probe_task

    flipped = parse_eval_config(raw(tmp_path, "values-harm-flipped", name="flipped"))
    with pytest.raises(PicacoError, match="Fairness inverted"):
        judge_probe_task.fn(flipped.model_dump(mode="json"))
    normal = parse_eval_config(raw(tmp_path, "values", name="normal"))
    (probe,) = judge_probe_task.fn(normal.model_dump(mode="json"))
    assert probe["judge"] == "sim/judge-eval" and {p["status"] for p in probe["values"].values()} == {"ok"}
    assert roles(normal) == {"judge"}, "the task probes and spends nothing else"
