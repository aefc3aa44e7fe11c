"""`picaco estimate` on a config with exact p_e (picaco/estimate_exact_pe.py): the echo calls it counts are
those a small run on the real engine pays (its call log)."""

from __future__ import annotations

import pytest

from picaco.base.config import ProviderSettings, RunConfig
from picaco.base.errors import ConfigError
from picaco.estimate import estimate
from picaco.llm import local_engine
from picaco.llm.calllog import read_call_log
from picaco.llm.local_engine import EngineSpec, LocalEngine, smollm2_path
from picaco.method.run import optimize


@pytest.fixture(autouse=True)
def hash_memo(tmp_path, monkeypatch):
    monkeypatch.setenv("PICACO_HASH_MEMO_DIR", str(tmp_path / "memo"))
    monkeypatch.setattr(local_engine, "_HASHES", {})


def logprob_config(root, providers: dict, target: str = "mine/smol") -> RunConfig:
    return RunConfig.model_validate({
        "run_name": "lp", "composition": "helpfulness", "prompts": {"demo_family": "hh"}, "runs_dir": root / "runs",
        "models": {"target": target, "judge": "sim/judge", "optimizer": "sim/optimizer", "embedding": "sim/embed"},
        "sampling": {"target_max_tokens": 8},
        "picaco": {"n_prompts": 2, "m1": 2, "m2": 1, "iterations": 1, "noisy_samples": 1, "n_pe_samples": 1,
                   "buckets": 1, "samples_per_bucket": 2, "demos_per_bucket": 0, "held_out": 0,
                   "judge_probe": False, "pe_estimator": "logprob"},
        "client": {"cache_dir": root / "cache", "providers": {"sim": {"kind": "sim", "options": {"world": "values"}},
                                                              **providers}}})


def test_a_target_without_prompt_log_probs_is_one_line_before_the_simulated_run(tmp_path):
    with pytest.raises(ConfigError, match="provider 'sim'.*gives no prompt log-probs"):
        estimate(logprob_config(tmp_path, {}, target="sim/target"), tmp_path / "work")
    assert not (tmp_path / "work" / "runs").exists()


def test_the_estimate_counts_the_echo_calls_a_real_run_pays(tmp_path):
    pytest.importorskip("llama_cpp", reason="the extra 'local' is not installed (make install installs it)")
    with LocalEngine(EngineSpec(n_ctx=1024, logits_all=True)) as engine:
        providers = {"mine": ProviderSettings(kind="llamacpp", base_url=engine.base_url, options={
            "prompt_logprobs": True, "chat_template": str(smollm2_path())}).model_dump()}
        config = logprob_config(tmp_path, providers)
        optimize(config)
    calls = [x for x in read_call_log(config.run_dir / "calls.jsonl") if x["kind"] == "call" and x["role"] == "target"]
    echoes = [x for x in calls if x["op"] == "score"]
    # 2 candidates (e^0 and one proposal) x 2 prompts x (the prompt + its 2 pooled responses)
    assert len(echoes) == 12
    rows = estimate(config, tmp_path / "work")["by_role"]
    assert rows["target"]["score_calls"] == len(echoes) and rows["target"]["calls"] == len(calls)
    real_tokens = sum(x["prompt_tokens"] for x in echoes)
    estimated = sum(x["prompt_tokens"] for x in read_call_log(tmp_path / "work" / "runs" / "estimate-lp" / "calls.jsonl")
                    if x.get("op") == "score")
    assert estimated == 0  # the simulated run itself echoes nothing: the echo calls are computed
    assert 0.5 < rows["target"]["prompt_tokens"] / (real_tokens + sum(x["prompt_tokens"] for x in calls
                                                                      if x["op"] == "chat")) < 2
