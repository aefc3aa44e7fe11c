"""The run's seed-vs-optimized comparison on held-out prompts (issue 13, part 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from picaco.base.errors import ConfigError
from picaco.config import parse_run_config
from picaco.method.inputs import prompt_source
from picaco.method.run import held_out_prompts, load_prompts, optimize


def config(tmp_path, world="values", **picaco) -> dict:
    return {"run_name": "held", "composition": "helpfulness", "prompts": {"demo_family": "hh"},
            "runs_dir": str(tmp_path / "runs"), "models": {"embedding": "sim/embed"},
            "client": {"cache_dir": str(tmp_path / "cache"),
                       "providers": {"sim": {"kind": "sim", "options": {"world": world}}}},
            "picaco": {"n_prompts": 3, "m1": 2, "m2": 2, "iterations": 2, "noisy_samples": 2, "n_pe_samples": 2,
                       "buckets": 2, "samples_per_bucket": 2, "held_out": 5, **picaco}}


def test_result_compares_seed_and_optimized_on_prompts_after_x_with_a_paired_interval(tmp_path):
    cfg = parse_run_config(config(tmp_path))
    result = optimize(cfg)
    held = result.held_out
    assert held == json.loads((cfg.run_dir / "result.json").read_text())["held_out"]
    x_ids = {p.prompt_id for p in load_prompts(cfg)}
    held_ids = {p.prompt_id for p in held_out_prompts(cfg, 5)}
    assert len(held_ids) == 5 and not held_ids & x_ids
    seed, opt, diff = held["seed"], held["optimized"], held["difference"]
    assert set(seed["per_prompt"]) <= held_ids and set(opt["per_prompt"]) <= held_ids
    assert seed["responses"] == opt["responses"] == 5 * 2 * 2
    common = sorted(set(seed["per_prompt"]) & set(opt["per_prompt"]))
    assert diff["n"] == len(common) > 0
    assert diff["mean"] == pytest.approx(np.mean([opt["per_prompt"][q] - seed["per_prompt"][q] for q in common]))
    assert diff["lo"] <= diff["mean"] <= diff["hi"]
    assert set(opt["value_means"]) == {"Coherence", "Complexity", "Verbosity", "Helpfulness"}
    md = (cfg.run_dir / "result.md").read_text()
    assert "## Seed vs optimized on 5 held-out prompts" in md and "Optimized minus seed, paired by prompt" in md


def test_an_unchanged_instruction_gets_the_same_responses_so_a_zero_difference(tmp_path):
    # the null optimizer returns the best shown instruction: e^T is the seed; with the same demonstrations
    # and sample indices both instructions send the same requests, so every prompt's difference is 0
    cfg = parse_run_config(config(tmp_path, world="values-null"))
    result = optimize(cfg)
    assert result.best_instruction == result.seed_instruction
    d = result.held_out["difference"]
    assert (d["mean"], d["lo"], d["hi"]) == (0.0, 0.0, 0.0) and d["n"] == 5


def test_zero_skips_it_and_a_short_source_gives_what_it_holds_after_x(tmp_path):
    assert optimize(parse_run_config(config(tmp_path, held_out=0))).held_out is None
    cfg = parse_run_config(config(tmp_path, held_out=10_000) | {"run_name": "toomany"})
    rows, _ = prompt_source(cfg)
    assert optimize(cfg).held_out["prompts"] == len(rows) - 3
    lines = [f'{{"prompt_id": "p{i}", "prompt": "Question number {i} about tea?"}}' for i in range(3)]
    (tmp_path / "x.jsonl").write_text("\n".join(lines) + "\n")
    only_x = config(tmp_path) | {"run_name": "onlyx", "prompts": {"demo_family": None, "path": str(tmp_path / "x.jsonl")}}
    assert optimize(parse_run_config(only_x)).held_out is None


def test_the_bootstrap_b_comes_from_the_config_and_changing_it_resumes_the_run(tmp_path):
    from picaco.stats import paired_difference

    cfg = parse_run_config(config(tmp_path, held_out_bootstrap=100))
    held = optimize(cfg).held_out
    assert held["bootstrap"] == 100
    seed, opt = held["seed"]["per_prompt"], held["optimized"]["per_prompt"]
    expected = paired_difference(opt, seed, b=100, seed=cfg.seed, purpose="held-out")
    assert held["difference"] == expected.model_dump()
    assert parse_run_config(config(tmp_path)).picaco.held_out_bootstrap == 1000
    # B changes no iteration: the same run resumes (not refused) and only the interval is recomputed
    again = optimize(parse_run_config(config(tmp_path, held_out_bootstrap=5000))).held_out
    assert again["bootstrap"] == 5000 and again["seed"] == held["seed"] and again["optimized"] == held["optimized"]
    assert again["difference"] == paired_difference(opt, seed, b=5000, seed=cfg.seed, purpose="held-out").model_dump()
    with pytest.raises(ConfigError, match="held_out_bootstrap"):
        parse_run_config(config(tmp_path, held_out_bootstrap=10))
