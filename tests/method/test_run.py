"""The loop end to end on the simulated world: records, resume, rerun, bad input."""

from __future__ import annotations

import json

import pytest

from picaco.base.errors import ConfigError
from picaco.config import parse_run_config
from picaco.method import run as runner
from picaco.method.run import RunStore, optimize


def tiny(tmp_path, **picaco_overrides) -> dict:
    picaco = {"n_prompts": 4, "m1": 3, "m2": 3, "iterations": 2, "noisy_samples": 4, "n_pe_samples": 3,
              "buckets": 2, "samples_per_bucket": 2}
    picaco.update(picaco_overrides)
    return {"run_name": "tiny", "composition": "confucianism", "prompts": {"demo_family": "schwartz"},
            "runs_dir": str(tmp_path / "runs"),
            "models": {"embedding": "sim/embed"},  # hashed bag-of-words: no torch in unit tests
            "client": {"cache_dir": str(tmp_path / "cache"),
                       "providers": {"sim": {"kind": "sim", "options": {"world": "values"}}}},
            "picaco": picaco}


def calls_in(log) -> int:
    from picaco.llm.calllog import paid_calls, read_call_log

    return paid_calls(read_call_log(log))


def test_optimize_writes_every_step_and_a_rerun_costs_nothing(tmp_path):
    cfg = parse_run_config(tiny(tmp_path))
    result = optimize(cfg)
    store = RunStore(cfg.run_dir)
    assert store.last_complete_iteration() == 2
    for name in ("config.json", "noisy.json", "iter_001.estep.json", "iter_001.json", "iter_002.json",
                 "result.json", "result.md", "calls.jsonl"):
        assert (cfg.run_dir / name).exists(), name
    state = store.load_iteration(2)
    assert state.best.instruction == result.best_instruction
    assert all(len(pool) <= 3 for pool in state.pools.values())
    assert len(state.candidates) <= 2 * 3
    assert set(result.value_scores) == {"Benevolence", "Conformity", "Tradition", "Security"}
    assert all(1 <= s <= 5 for s in result.value_scores.values())
    assert "Optimized meta-instruction" in (cfg.run_dir / "result.md").read_text()
    # noisy pool: top-M2 by q_phi of the raw responses
    noisy = store.load_noisy()
    assert all(len(p) == 3 for p in noisy.pools.values()) and len(noisy.observation) == 1
    assert all(p[0].q_phi >= p[-1].q_phi for p in noisy.pools.values())

    log = cfg.run_dir / "calls.jsonl"
    before = calls_in(log)
    again = optimize(cfg)
    assert calls_in(log) == before, "a finished run must make no backend call when run again"
    assert again.best_instruction == result.best_instruction


def test_resume_after_a_lost_step_equals_an_uninterrupted_run(tmp_path):
    whole = optimize(parse_run_config(tiny(tmp_path / "a")))
    cfg = parse_run_config(tiny(tmp_path / "b"))
    runner.run_noisy_pool(cfg)
    runner.run_e_step(cfg, 1)
    runner.run_m_step(cfg, 1)
    runner.run_e_step(cfg, 2)  # ... and the process dies before the M-step of iteration 2
    resumed = optimize(cfg)
    assert resumed.best_instruction == whole.best_instruction
    assert [h.tc for h in resumed.history] == pytest.approx([h.tc for h in whole.history], abs=1e-9)


def test_growing_T_continues_a_finished_run(tmp_path):
    cfg = parse_run_config(tiny(tmp_path))
    optimize(cfg)
    longer = parse_run_config({**tiny(tmp_path), "picaco": {**tiny(tmp_path)["picaco"], "iterations": 3}})
    result = optimize(longer)
    assert [h.t for h in result.history] == [1, 2, 3]


def test_a_run_refuses_a_different_config(tmp_path):
    optimize(parse_run_config(tiny(tmp_path)))
    other = parse_run_config({**tiny(tmp_path), "seed": 5})
    with pytest.raises(ConfigError, match=r"different inputs: seed 0 -> 5\. .*another run_name"):
        optimize(other)


def test_kept_candidates_cost_no_new_target_calls(tmp_path):
    cfg = parse_run_config(tiny(tmp_path, iterations=2))
    optimize(cfg)
    lines = [json.loads(line) for line in (cfg.run_dir / "calls.jsonl").read_text().splitlines()]
    state1 = RunStore(cfg.run_dir).load_iteration(1)
    state2 = RunStore(cfg.run_dir).load_iteration(2)
    kept_in_2 = [c for c in state2.candidates if c.born < 2]
    assert kept_in_2 and all(c.instruction in {d.instruction for d in state1.candidates} for c in kept_in_2)
    # every p_e request (n = n_pe_samples, start 0) of a kept candidate was answered by the cache
    from picaco.method.context import RunContext, instructed_request
    from picaco.method.run import load_composition_for, load_prompts
    ctx = RunContext(config=cfg, composition=load_composition_for(cfg), prompts=load_prompts(cfg), client=None)
    for c in kept_in_2:
        keys = {instructed_request(ctx, c.instruction, [], p.text).sample_keys("sim-inproc:values", 0, 1)[0]
                for p in ctx.prompts}
        requests = [rec for rec in lines if rec.get("key") in keys and rec["kind"] == "chat"]
        paid = [rec for rec in lines if rec.get("key") in keys and rec["kind"] == "call"]
        assert requests and len(paid) == len(ctx.prompts), "paid once, in the iteration it was born"


@pytest.mark.parametrize("patch,match", [
    ({"composition": "nonexistent"}, "nonexistent"),
    ({"picaco": {"beta": 0}}, "beta"),
    ({"picaco": {"n_prompts": 500}}, "n_prompts=500"),
    ({"picaco": {"m2": 0}}, "m2"),
    ({"picaco": {"iterations": 0}}, "iterations"),
    ({"picaco": {"m2": 30, "noisy_samples": 20}}, "m2"),
    ({"models": {"target": "nope/x"}}, "unknown provider"),
    ({"unknown_field": 1}, "unknown_field"),
    # YAML `true` or "3" were coerced to 1 and 3; numeric fields are strict now
    ({"picaco": {"iterations": True}}, r"picaco\.iterations': Input should be a valid integer, got true"),
    ({"picaco": {"m1": 2.0}}, r"picaco\.m1': Input should be a valid integer, got 2\.0"),
    ({"seed": "3"}, r"'seed': Input should be a valid integer, got '3' \(a string\)"),
    ({"sampling": {"target_temperature": "0.5"}}, r"target_temperature': Input should be a valid number, got '0\.5'"),
])
def test_bad_input_is_one_clear_line_and_leaves_no_iteration(tmp_path, patch, match):
    raw = tiny(tmp_path)
    for k, v in patch.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    with pytest.raises(ConfigError, match=match) as info:
        optimize(parse_run_config(raw))
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "runs").glob("*/iter_*.json"))


def test_optimize_uses_one_client_and_gives_what_the_step_by_step_path_gives(tmp_path, monkeypatch):
    opened = []

    class Counted(runner.LLMClient):
        def __init__(self, *args, **kwargs):
            opened.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(runner, "LLMClient", Counted)
    whole = optimize(parse_run_config(tiny(tmp_path / "whole")))
    assert len(opened) == 1  # one client (and one event loop) for the noisy pool, every step and the report
    cfg = parse_run_config(tiny(tmp_path / "steps"))
    runner.run_noisy_pool(cfg)
    for t in range(1, cfg.picaco.iterations + 1):
        runner.run_e_step(cfg, t)
        runner.run_m_step(cfg, t)
    assert runner.run_final_report(cfg) == whole
    assert len(opened) - 1 == 1 + 2 * cfg.picaco.iterations + 1  # the task path: a client per step
    for name in ("noisy.json", "iter_001.estep.json", "iter_001.json", "iter_002.json"):
        assert (cfg.run_dir / name).read_text() == (tmp_path / "whole" / "runs" / "tiny" / name).read_text()


def test_the_m_step_draft_runs_while_the_e_step_is_out(tmp_path, monkeypatch):
    """The loop starts the M-step's proposals and p_e samples with the E-step: an E-step that waits for the
    draft to begin would never finish if they ran one after the other."""
    import asyncio

    started = []

    real_draft, real_e_step = runner.draft_m_step, runner.e_step

    async def draft(ctx, t, prev):
        started.append(t)
        return await real_draft(ctx, t, prev)

    async def e_step(ctx, t, *args):
        for _ in range(200):  # up to 2 s for the draft to start
            if t in started:
                break
            await asyncio.sleep(0.01)
        assert t in started, f"the M-step draft of iteration {t} did not start during its E-step"
        return await real_e_step(ctx, t, *args)

    monkeypatch.setattr(runner, "draft_m_step", draft)
    monkeypatch.setattr(runner, "e_step", e_step)
    cfg = parse_run_config(tiny(tmp_path))
    optimize(cfg)
    assert started == [1, 2]


def test_each_step_counts_its_own_calls_when_they_overlap(tmp_path):
    """The E-step's usage record holds the E-step's calls only; the draft's (optimizer, p_e samples) are the
    M-step's."""
    from picaco.llm.calllog import read_call_log, usage_by_role

    cfg = parse_run_config(tiny(tmp_path))
    optimize(cfg)
    store = RunStore(cfg.run_dir)
    for t in (1, 2):
        estep = json.loads((cfg.run_dir / f"iter_{t:03d}.estep.usage.json").read_text())
        assert set(estep) == {"target", "judge", "embedding"}
        # bucketed sampling: one target request per (prompt, bucket)
        assert estep["target"]["requests"] == 4 * 2
        assert store.load_iteration(t).usage_by_role["optimizer"]["requests"] == 3  # M2 slots
    # only the M-steps call the optimizer: their records hold every optimizer call of the run
    whole = usage_by_role(read_call_log(cfg.run_dir / "calls.jsonl"))
    summed = sum(store.load_iteration(t).usage_by_role["optimizer"]["calls"] for t in (1, 2))
    assert summed == whole["optimizer"]["calls"] > 0


def test_the_loop_with_its_draft_chooses_as_the_steps_one_after_the_other(tmp_path):
    """The draft is a schedule, not a change of method: the same requests, so the same candidates, TC_e and
    choices as each iteration's E-step, then its whole M-step, run as separate steps (the flow's tasks)."""
    looped = optimize(parse_run_config(tiny(tmp_path / "loop")))
    cfg = parse_run_config(tiny(tmp_path / "steps"))
    runner.run_noisy_pool(cfg)
    for t in (1, 2):
        runner.run_e_step(cfg, t)
        runner.run_m_step(cfg, t)  # no draft: proposes, samples and scores itself
    stepped, store = runner.run_final_report(cfg), RunStore(cfg.run_dir)
    assert stepped.best_instruction == looped.best_instruction
    loop_store = RunStore(tmp_path / "loop" / "runs" / "tiny")
    for t in (1, 2):
        a, b = loop_store.load_iteration(t), store.load_iteration(t)
        assert [(c.instruction, c.tc) for c in a.candidates] == [(c.instruction, c.tc) for c in b.candidates]
