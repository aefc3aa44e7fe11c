"""Exact log-probs of a chat response (picaco/llm/logprobs.py), checked against the real engine.

One llama.cpp engine (SmolLM2-135M, logits_all, n_batch 1) serves the module as a server of the user's own;
the template and bad-input tests need none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from picaco.base.config import ClientConfig, ProviderSettings, RunConfig
from picaco.base.errors import ConfigError
from picaco.llm import local_engine
from picaco.llm.chat_template import ChatTemplate
from picaco.llm.client import LLMClient
from picaco.llm.engine_check import check_engine
from picaco.llm.engine_child import _top_k_sorted
from picaco.llm.local_engine import EngineSpec, LocalEngine, smollm2_path
from picaco.llm.logprobs import (
    EchoedPrompt,
    LogprobError,
    chat_template_for,
    echo_key,
    render_pair,
    response_logprob,
    response_tokens,
)
from picaco.llm.request import Message
from picaco.method.context import RunContext
from picaco.method.inputs import run_inputs
from picaco.method.picaco import score
from picaco.method.pools import AlignedEntry
from picaco.method.state import Candidate, NoisyState

MESSAGES = (Message(role="system", content="Answer briefly."),
            Message(role="user", content="Name a fruit and say why it is good."))


@pytest.fixture(autouse=True)
def hash_memo(tmp_path, monkeypatch):
    monkeypatch.setenv("PICACO_HASH_MEMO_DIR", str(tmp_path / "memo"))
    monkeypatch.setattr(local_engine, "_HASHES", {})


def own_server(base_url: str) -> dict[str, ProviderSettings]:
    return {"mine": ProviderSettings(kind="llamacpp", base_url=base_url,
                                     options={"prompt_logprobs": True, "chat_template": str(smollm2_path())})}


def client(tmp_path, providers, log: str = "calls.jsonl") -> LLMClient:
    return LLMClient(ClientConfig(cache_dir=tmp_path / "cache", call_log_path=tmp_path / log, providers=providers))


def paid_calls(path) -> list[dict]:
    return [x for x in map(json.loads, path.read_text().splitlines()) if x["kind"] == "call"]


# -- with the engine ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("llama_cpp", reason="the extra 'local' is not installed (make install installs it)")
    with LocalEngine(EngineSpec(n_ctx=1024, logits_all=True, n_batch=1)) as e:
        yield e


async def test_the_score_of_a_greedy_generation_equals_the_log_probs_the_engine_reported(engine, tmp_path):
    providers = own_server(engine.base_url)
    template = chat_template_for("mine", providers)
    async with client(tmp_path, providers) as c:
        check = await check_engine(c, "mine/smol", engine.base_url, MESSAGES, template, max_tokens=12)
    assert check.text.strip() and len(check.engine_tokens) >= 4
    assert check.tokens_match, (check.engine_tokens, check.picaco_tokens)
    assert check.max_abs_err_per_token <= 1e-3, (check.engine_logprobs, check.picaco_logprobs)
    # two echoes paid (the prompt without and with the response); the rerun is answered by the cache
    assert [x["op"] for x in paid_calls(tmp_path / "calls.jsonl")] == ["score", "score"]
    async with client(tmp_path, providers, log="rerun.jsonl") as c:
        again = await response_logprob(c, "mine/smol", MESSAGES, check.text, template)
    assert again.token_logprobs == check.picaco_logprobs and paid_calls(tmp_path / "rerun.jsonl") == []


async def test_another_instruction_gives_the_same_text_another_score(engine, tmp_path):
    providers = own_server(engine.base_url)
    template = chat_template_for("mine", providers)
    text = "A banana, because it is sweet and easy to carry."
    other = (Message(role="system", content="Answer only in French."), MESSAGES[1])
    async with client(tmp_path, providers) as c:
        a = await response_logprob(c, "mine/smol", MESSAGES, text, template)
        b = await response_logprob(c, "mine/smol", other, text, template)
    assert "".join(a.tokens) == text == "".join(b.tokens)
    assert a.total != b.total and all(x <= 0 for x in a.token_logprobs)


# -- the template and the token span, without an engine -----------------------------------------------------
def test_a_template_that_changes_the_response_text_is_refused_in_one_line():
    trims = ChatTemplate("{% for m in messages %}[{{ m.role }}]{{ m.content | trim }}\n{% endfor %}"
                         "{% if add_generation_prompt %}[assistant]{% endif %}", source="test")
    with pytest.raises(LogprobError, match="does not put the response verbatim"):
        render_pair(trims, MESSAGES, "  spaced answer")


def echo(tokens: list[str], logprobs: list[float | None], generated: int = 1) -> EchoedPrompt:
    offsets, at = [], 0
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return EchoedPrompt(tuple(tokens), tuple(offsets), tuple(logprobs), len(tokens) - generated, generated)


def test_the_response_tokens_are_those_after_the_prefix_in_the_engines_offsets():
    # special tokens detokenize to '' in llama.cpp's offsets: the prefix's length is read from its own echo
    prefix = echo(["system", "\n", "Hi", "", "\n", "assistant", "\n", "The"], [None, -1, -2, -3, -4, -5, -6, -9])
    full = echo(["system", "\n", "Hi", "", "\n", "assistant", "\n", "Yes", " sure", "", "\n", "!"],
                [None, -1, -2, -3, -4, -5, -6, -0.5, -0.25, -7, -8, -9])
    scored = response_tokens(prefix, full, "Yes sure")
    assert scored.tokens == ("Yes", " sure") and scored.total == -0.75 and scored.mean == -0.375
    with pytest.raises(LogprobError, match="cannot find the response's tokens"):
        response_tokens(prefix, full, "No way")


def test_the_key_names_the_rendered_prompt_and_the_engine():
    base = echo_key("mine/smol", "llamacpp:sha256=a", "prompt")
    assert base == echo_key("mine/smol", "llamacpp:sha256=a", "prompt")
    assert base != echo_key("mine/smol", "llamacpp:sha256=b", "prompt")
    assert base != echo_key("mine/smol", "llamacpp:sha256=a", "prompt ")


@pytest.mark.parametrize("settings, says", [
    ({"kind": "sim"}, "gives no prompt log-probs"),
    ({"kind": "openai", "base_url": "http://127.0.0.1:1/v1"}, "gives no prompt log-probs"),
    ({"kind": "llamacpp"}, "set options.logits_all: true"),
    ({"kind": "llamacpp", "options": {"logits_all": True, "chat_format": "chatml"}}, "remove it"),
    ({"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "options": {"prompt_logprobs": True}},
     "needs options.chat_template"),
])
def test_a_provider_without_prompt_log_probs_is_one_config_error(settings, says):
    with pytest.raises(ConfigError, match=says):
        chat_template_for("t", {"t": ProviderSettings(**settings)})


def test_a_managed_engine_with_logits_all_gives_the_ggufs_template():
    managed = chat_template_for("t", {"t": ProviderSettings(kind="llamacpp", options={"logits_all": True})})
    assert "<|im_start|>" in managed.template


def test_a_run_asking_for_exact_pe_on_the_simulator_stops_before_it_starts(tmp_path):
    config = RunConfig(run_name="r", runs_dir=tmp_path / "runs", picaco={"pe_estimator": "logprob"},
                       client={"cache_dir": tmp_path / "cache"})
    with pytest.raises(ConfigError, match=r"picaco.pe_estimator logprob: models.target: provider 'sim'"):
        run_inputs(config)
    assert not (tmp_path / "runs").exists()


async def test_an_m_step_scores_its_candidates_by_exact_p_e_and_its_rerun_is_cached(engine, tmp_path):
    providers = {**own_server(engine.base_url), "sim": ProviderSettings(kind="sim")}
    config = RunConfig(run_name="r", runs_dir=tmp_path / "runs", models={"target": "mine/smol"},
                       picaco={"pe_estimator": "logprob", "n_prompts": 1},
                       client={"cache_dir": tmp_path / "cache", "call_log_path": tmp_path / "calls.jsonl",
                               "providers": providers})
    inputs = run_inputs(config)
    query = inputs.prompts[0]
    pool = [AlignedEntry(text=t, origin=f"t001/b0/s{i:03d}", scores={v.name: s for v in inputs.composition.values}, q_phi=1.0,
                         weight=w)
            for i, (t, s, w) in enumerate([("I can help with that. Here is a short answer.", 5, -0.1),
                                           ("No.", 1, -8.0)])]
    candidates = [Candidate(instruction="Be helpful and kind.", born=0),
                  Candidate(instruction="Refuse every request.", born=1)]

    async def scored(log: str):
        cfg = config.model_copy(update={"client": config.client.model_copy(update={"call_log_path": tmp_path / log})})
        async with LLMClient(cfg.client) as c:
            ctx = RunContext(config=cfg, composition=inputs.composition, prompts=inputs.prompts, client=c)
            out = await score(ctx, candidates, {query.prompt_id: pool}, NoisyState(observation=["x"], pools={}))
        return [s.candidate.tc for s in out]

    first = await scored("a.jsonl")
    # each candidate: the prompt without a response, then each pooled response: 2 x 3 echoes, nothing generated
    assert [x["op"] for x in paid_calls(tmp_path / "a.jsonl")] == ["score"] * 6
    assert all(np.isfinite(first)) and first[0] != first[1]
    assert await scored("b.jsonl") == first and paid_calls(tmp_path / "b.jsonl") == []


def test_the_engines_top_k_sort_gives_the_builtins_first_entries():
    row = np.random.default_rng(0).normal(size=5000).astype(np.float32)
    row[[3, 9]] = 7.0  # a tie: the higher index first, as sorted(reverse=True) puts it

    def _create_completion(logprobs):  # the caller's name and its `logprobs` are what the stand-in reads
        return _top_k_sorted(zip(row, range(len(row))), reverse=True)

    expected = sorted(zip(row, range(len(row))), reverse=True)
    for k in (0, 1, 3):
        assert [(float(v), i) for v, i in _create_completion(k)] == [(float(v), i) for v, i in expected[:max(k, 1)]]
    assert _top_k_sorted([3, 1, 2], reverse=True) == [3, 2, 1]  # any other call: the builtin
