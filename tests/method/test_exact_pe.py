"""Exact p_e (picaco/method/exact_pe.py) on a stand-in engine that echoes prompt log-probs
(tests/llm/fake_llm.py): what it echoes, and p = exp(mean log-prob per response token). The M-step scored by
exact p_e on the real engine is in tests/llm/test_logprobs.py."""

from __future__ import annotations

import math

import pytest
from fake_llm import echoing_engine_registered, echoing_settings

from picaco.base.config import ProviderSettings, RunConfig
from picaco.llm.client import LLMClient
from picaco.llm.logprobs import ResponseLogprob
from picaco.method.context import RunContext
from picaco.method.exact_pe import exact_pe, pe_from_logprob, prompt_scores
from picaco.method.inputs import run_inputs
from picaco.method.pools import AlignedEntry


@pytest.fixture
def engine():
    with echoing_engine_registered() as eng:
        yield eng


def run_config(tmp_path, n_prompts: int = 2) -> RunConfig:
    return RunConfig(run_name="r", runs_dir=tmp_path / "runs", models={"target": "eng/smol"},
                     picaco={"pe_estimator": "logprob", "n_prompts": n_prompts},
                     client={"cache_dir": tmp_path / "cache", "call_log_path": tmp_path / "calls.jsonl",
                             "providers": {"eng": echoing_settings(tmp_path), "sim": ProviderSettings(kind="sim")}})


def entry(text: str) -> AlignedEntry:
    return AlignedEntry(text=text, origin="t001/b0/s000", scores={}, q_phi=1.0, weight=0.0)


async def test_one_prompt_is_echoed_once_without_a_response_then_once_per_response(engine, tmp_path):
    config = run_config(tmp_path)
    inputs = run_inputs(config)
    query = inputs.prompts[0]
    async with LLMClient(config.client) as client:
        ctx = RunContext(config=config, composition=inputs.composition, prompts=inputs.prompts, client=client)
        scores = await prompt_scores(ctx, "Be kind.", query.text, [entry("Yes of course"), entry("No")])
    assert [s.tokens for s in scores] == [("Yes", " ", "of", " ", "course"), ("No",)]
    # the stand-in's log-prob of a token is -0.5 per character (a space counts one)
    assert [s.token_logprobs for s in scores] == [(-1.5, -0.5, -1.0, -0.5, -3.0), (-1.0,)]
    prefix, *full = engine.calls
    # the system prompt holds the instruction and no demonstrations (PE_DEMONSTRATIONS), the query is the user turn
    system, user = prefix.removesuffix("\nassistant: ").split("\nuser: ")
    assert system.startswith("system: Below is a list of conversations") and system.endswith("\nBe kind.")
    assert user == f"# Query:\n{query.text}\n# Answer:\n"
    assert sorted(full) == sorted([prefix + "Yes of course\n", prefix + "No\n"])


async def test_p_e_is_exp_of_the_mean_token_log_prob_per_prompt_and_a_rerun_is_cached(engine, tmp_path):
    config = run_config(tmp_path)
    inputs = run_inputs(config)
    first, second = inputs.prompts[:2]
    pools = {first.prompt_id: [entry("ab cd"), entry("a")], second.prompt_id: [], "not-a-prompt": [entry("x")]}
    async with LLMClient(config.client) as client:
        ctx = RunContext(config=config, composition=inputs.composition, prompts=inputs.prompts, client=client)
        pe = await exact_pe(ctx, "Be kind.", pools)
        assert len(engine.calls) == 3  # the prompt without a response, then each response; empty pools none
        again = await exact_pe(ctx, "Be kind.", pools)
        assert len(engine.calls) == 3 and client.usage_by_role()["target"]["samples_hit"] == 3
    assert list(pe) == [first.prompt_id]  # prompts with an empty pool (or none) are left out
    # "ab cd": tokens ab, ' ', cd -> -1, -0.5, -1 (mean -2.5/3); "a": -0.5
    assert pe[first.prompt_id] == pytest.approx([math.exp(-2.5 / 3), math.exp(-0.5)])
    assert list(again[first.prompt_id]) == list(pe[first.prompt_id])


def test_p_from_a_score_is_the_geometric_mean_token_probability():
    assert pe_from_logprob(ResponseLogprob(("a", "b"), (math.log(0.5), math.log(0.125)))) == pytest.approx(0.25)
