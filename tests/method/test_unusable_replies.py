"""Unusable optimizer and judge replies: retried, then skipped or recorded as missing, never invented."""

from __future__ import annotations

import pytest

from picaco.base.errors import PicacoError
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
    assert result.best_instruction == state.candidates[0].instruction  # only the seed was left


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
    with pytest.raises(PicacoError, match="no candidate could be scored") as err:
        runner.run_m_step(cfg, 1)
    assert f"{report.missing} of {report.responses} judge replies missing" in str(err.value) and "models.judge" in str(err.value)
    assert "\n" not in str(err.value)
    assert RunStore(cfg.run_dir).load_iteration(1) is None


# ---- issue 10: content-filtered replies are missing samples, never an aborted run ------------------------
class Filtering(SimProvider):
    """The value world behind a content filter that refuses about one call in five (all its samples),
    decided by the call itself, so that a rerun meets the same refusals."""

    refused: list = []

    async def generate(self, call):
        import hashlib

        from picaco.llm.errors import ContentFiltered

        digest = hashlib.sha256(repr((call.messages, call.seed, call.first_index, call.n)).encode()).digest()
        if digest[0] % 5 == 0:
            Filtering.refused.append(call.n)
            raise ContentFiltered("every choice was content-filtered", provider=self.name, status=200)
        return await super().generate(call)


@pytest.fixture
def filtering_provider():
    register_kind("filtering", Filtering)
    Filtering.refused = []
    yield Filtering
    PROVIDER_KINDS.pop("filtering", None)


def test_content_filtered_replies_are_counted_missing_and_the_run_goes_on(tmp_path, filtering_provider):
    from picaco.method.state import filtered_replies

    raw = config(tmp_path)
    raw["composition"], raw["prompts"] = "confucianism", {"demo_family": "schwartz"}  # S is a target sample
    raw["models"].update({"target": "filt/target", "judge": "filt/judge", "optimizer": None})
    raw["client"]["providers"]["filt"] = {"kind": "filtering", "options": {"world": "values"}}
    raw["picaco"].update({"iterations": 2, "n_prompts": 4, "noisy_samples": 3, "n_pe_samples": 2})
    cfg = parse_run_config(raw)
    result = optimize(cfg)
    store = RunStore(cfg.run_dir)
    states = store.iterations()
    assert len(states) == 2 and filtering_provider.refused, "the filter refused nothing: the test tests nothing"
    noisy = store.load_noisy()
    per_step = [noisy.filtered] + [s.estep.filtered + s.estep.judge_filtered + s.mstep.optimizer_filtered
                                   + s.mstep.pe_filtered for s in states]
    assert filtered_replies(noisy, states) == sum(per_step) > 0
    assert result.filtered_replies >= sum(per_step)  # plus the final scoring's
    assert "content filter" in (cfg.run_dir / "result.md").read_text()
    # nothing was made up: no empty or refused text in any pool, every judged entry has real scores
    for state in states:
        for pool in state.pools.values():
            assert all(e.text.strip() and all(1 <= v <= 5 for v in e.scores.values()) for e in pool)
        assert state.estep.responses + state.estep.filtered > 0
    assert all(e.text.strip() for pool in noisy.pools.values() for e in pool)
    # the refusals are not cached: a rerun of the same config asks for them again and meets the same filter
    again = optimize(parse_run_config({**raw, "run_name": "again"}))
    assert again.best_instruction == result.best_instruction
    assert again.filtered_replies == result.filtered_replies


def test_a_judge_whose_every_reply_is_filtered_leaves_responses_missing(tmp_path, filtering_provider, monkeypatch):
    from picaco.llm.errors import ContentFiltered

    async def refuse_judging(self, call):
        if "Please act as an impartial judge" in call.messages[-1].content:
            raise ContentFiltered("refused", provider=self.name, status=200)
        return await SimProvider.generate(self, call)

    monkeypatch.setattr(Filtering, "generate", refuse_judging)
    raw = config(tmp_path)
    raw["models"]["judge"] = "filt/judge"
    raw["client"]["providers"]["filt"] = {"kind": "filtering", "options": {"world": "values"}}
    cfg = parse_run_config(raw)
    runner.run_noisy_pool(cfg)
    report = runner.run_e_step(cfg, 1).report
    attempts = cfg.picaco.judge_attempts
    assert report.missing == report.responses > 0 and report.judged == 0
    assert report.judge_filtered == report.judge_attempts == attempts * report.responses
