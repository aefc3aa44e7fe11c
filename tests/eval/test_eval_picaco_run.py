"""PICACO's instruction from a run config: the evaluation optimizes it (tiny budget, simulated world),
OPRO inherits its query set and budget, and the test set is held out from its prompts."""

from __future__ import annotations

import json

import pytest
import yaml

from picaco.base.errors import ConfigError
from picaco.eval import evaluate
from picaco.eval.config import parse_eval_config


def _configs(tmp_path, **eval_over):
    client = {"cache_dir": str(tmp_path / "cache"), "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}}
    run = {"run_name": "tiny", "composition": "hh_balance", "prompts": {"demo_family": "hh"},
           "models": {"target": "sim/target", "judge": "sim/judge", "embedding": "sim/embed"},
           "picaco": {"n_prompts": 3, "m1": 2, "m2": 2, "iterations": 1, "n_pe_samples": 2, "buckets": 1,
                      "samples_per_bucket": 2, "noisy_samples": 2},
           "client": client, "runs_dir": str(tmp_path / "runs")}
    run_path = tmp_path / "run.yaml"
    run_path.write_text(yaml.safe_dump(run))
    raw = {"name": "withrun", "methods": ["picaco", "opro"], "prompts": {"count": 1},
           "picaco": {"run_config": str(run_path)}, "client": client, "out_dir": str(tmp_path / "out"),
           "protocol": {"buckets": 1, "samples_per_bucket": 2}, **eval_over}
    return parse_eval_config(raw), tmp_path / "runs" / "tiny"


def test_picaco_run_config_is_optimized_and_gives_opro_its_query_set(tmp_path):
    cfg, run_dir = _configs(tmp_path)
    events = []
    out = evaluate(cfg, on_event=lambda kind, **kw: events.append(kind))
    assert "optimize" in events
    result = json.loads((run_dir / "result.json").read_text())
    from picaco.eval.store import EvalStore

    store = EvalStore(cfg.eval_dir)
    picaco = store.load("main/hh_balance/picaco")
    opro = store.load("main/hh_balance/opro")
    assert picaco.info["instruction"] == result["best_instruction"]
    assert picaco.info["origin"].endswith("tiny/result.json")
    from picaco.values import load_demo_prompts

    hh = load_demo_prompts("hh")
    assert list(picaco.prompts) == [hh[3]["prompt_id"]], "the test set starts after the run's 3 prompts"
    assert (opro.info["iterations"], opro.info["per_iteration"], opro.info["optimization_prompts"]) == (1, 2, 3)
    assert len(out["summary"]) == 2


def test_test_prompts_inside_the_runs_x_are_refused(tmp_path):
    cfg, _ = _configs(tmp_path, methods=["q"], prompts={"offset": 0, "count": 1})
    with pytest.raises(ConfigError, match="also in the optimization set"):
        evaluate(cfg)


def test_value_set_jobs_share_the_test_prompts_after_the_size_runs_x(tmp_path):
    run_path = tmp_path / "run.yaml"
    cfg, _ = _configs(tmp_path, methods=["q"], analyses={"value_sets": {
        "sizes": [2], "methods": ["q_if", "picaco"], "picaco_run_config": str(run_path)}})
    evaluate(cfg)
    from picaco.eval.store import EvalStore

    store = EvalStore(cfg.eval_dir)
    prompts = {m: list(store.load(f"value_sets/n2/{m}").prompts) for m in ("q", "q_if", "picaco")}
    assert prompts["q"] == prompts["q_if"] == prompts["picaco"] == list(store.load("main/hh_balance/q").prompts)
    sized = json.loads((tmp_path / "runs" / "tiny-hh2" / "result.json").read_text())
    assert sized["composition"].endswith("value_sets/hh_2.yaml")
    assert store.load("value_sets/n2/picaco").info["instruction"] == sized["best_instruction"]
