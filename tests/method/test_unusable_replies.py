"""Unusable optimizer and judge replies: retried, then skipped or recorded as missing, never invented."""

from __future__ import annotations

import pytest

from picaco.config import parse_run_config
from picaco.llm.providers import PROVIDER_KINDS, register_kind
from picaco.llm.providers.base import ChatReply, Completion
from picaco.llm.providers.sim import SimProvider
from picaco.method import run as runner
from picaco.method.run import RunStore, optimize


class NoTagOptimizer(SimProvider):
    """The value world, except that the optimizer never uses <INS> tags."""

    async def generate(self, call):
        if call.messages[0].content.startswith("You are an expert in LLM instructions"):
            return ChatReply([Completion("Be nicer and more helpful, I would say.", "stop")] * call.n, 10, 10)
        return await super().generate(call)


@pytest.fixture
def no_tag_provider():
    register_kind("notag", NoTagOptimizer)
    yield
    PROVIDER_KINDS.pop("notag", None)


def config(tmp_path, world_options=None, optimizer="sim/optimizer") -> dict:
    options = {"world": "values", **(world_options or {})}
    return {"run_name": "replies", "composition": "helpfulness", "prompts": {"demo_family": "hh"},
            "runs_dir": str(tmp_path / "runs"),
            "models": {"embedding": "sim/embed", "optimizer": optimizer},
            "client": {"cache_dir": str(tmp_path / "cache"),
                       "providers": {"sim": {"kind": "sim", "options": options},
                                     "notag": {"kind": "notag", "options": {"world": "values"}}}},
            "picaco": {"n_prompts": 3, "m1": 2, "m2": 2, "iterations": 1, "noisy_samples": 2, "n_pe_samples": 2,
                       "buckets": 1, "samples_per_bucket": 2, "optimizer_attempts": 3}}


def test_optimizer_reply_without_ins_is_retried_then_skipped_and_logged(tmp_path, no_tag_provider):
    cfg = parse_run_config(config(tmp_path, optimizer="notag/optimizer"))
    result = optimize(cfg)
    state = RunStore(cfg.run_dir).load_iteration(1)
    assert state.mstep.new_unique == 0 and len(state.mstep.skipped) == 2
    assert all("no_tag" in reason or "<INS>" in reason for reason in state.mstep.skipped), state.mstep.skipped
    assert state.mstep.optimizer_attempts == 2 * 3
    assert result["best_instruction"] == state.candidates[0].instruction  # only the seed was left


def test_malformed_judge_replies_are_retried_and_counted_missing(tmp_path):
    cfg = parse_run_config(config(tmp_path, {"world_malformed_rate": 0.5}))
    runner.run_noisy_pool(cfg)
    report = runner.run_e_step(cfg, 1).report
    assert report.judge_attempts > report.responses  # retried
    assert report.judged + report.missing == report.responses
    # the aligned pool only holds judged responses, with real scores
    state = RunStore(cfg.run_dir).load_estep(1)
    for pool in state.pools.values():
        for entry in pool:
            assert set(entry.scores) == {"Coherence", "Complexity", "Verbosity", "Helpfulness"}
            assert all(1 <= s <= 5 for s in entry.scores.values())


def test_a_judge_that_never_answers_usably_stops_the_run_with_a_clear_error(tmp_path):
    cfg = parse_run_config(config(tmp_path, {"world_malformed_rate": 1.0}))
    runner.run_noisy_pool(cfg)
    report = runner.run_e_step(cfg, 1).report
    assert report.missing == report.responses and report.judged == 0 and report.value_means["Coherence"] is None
    with pytest.raises(RuntimeError, match="no candidate could be scored"):
        runner.run_m_step(cfg, 1)
    assert RunStore(cfg.run_dir).load_iteration(1) is None
