"""The managed llama.cpp engine with the real SmolLM2-135M (extra 'local', installed by `make install`).

One engine serves this module (as a server of the user's own, `base_url`); the managed-engine scenario
starts the engines it is about (a restart on another port, a death mid-run). Replies are 4 tokens or
fewer, so the module runs in well under a minute."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket

import pytest
from typer.testing import CliRunner

from picaco.base.config import ClientConfig, ProviderSettings
from picaco.base.errors import ConfigError
from picaco.cli import app
from picaco.llm import local_engine
from picaco.llm.client import LLMClient
from picaco.llm.local_engine import EngineError, EngineSpec, LocalEngine, endpoint_identity, file_sha256, smollm2_path
from picaco.llm.request import ChatRequest

pytest.importorskip("llama_cpp", reason="the extra 'local' is not installed (make install installs it)")


@pytest.fixture(autouse=True)
def hash_memo(tmp_path, monkeypatch):
    """Model hashes are remembered in a memo of this test's own, not the user's ~/.cache."""
    monkeypatch.setenv("PICACO_HASH_MEMO_DIR", str(tmp_path / "memo"))
    monkeypatch.setattr(local_engine, "_HASHES", {})
    return tmp_path / "memo" / "gguf-sha256.json"


@pytest.fixture(scope="module")
def engine():
    with LocalEngine(EngineSpec(n_ctx=1024)) as e:
        yield e
    assert not e.alive()


def request(model: str = "llamacpp/smollm2", seed: int = 11) -> ChatRequest:
    return ChatRequest.of(model, "Answer in three words.", "Name a fruit.", role="target", seed=seed,
                          temperature=1.0, max_tokens=4)


def client(tmp_path, providers: dict | None = None, log: str = "calls.jsonl") -> LLMClient:
    return LLMClient(ClientConfig(cache_dir=tmp_path / "cache", call_log_path=tmp_path / log,
                                  providers={k: ProviderSettings(**v) for k, v in (providers or {}).items()}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call_lines(path) -> list[dict]:
    return [x for x in map(json.loads, path.read_text().splitlines()) if x["kind"] == "call"]


async def test_n3_from_the_engine_is_three_calls_three_cached_samples_and_a_rerun_is_cached(engine, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="picaco.llm.client")
    # told nothing, the client asks for 3 in one call, gets 1, and fetches the others one by one
    providers = {"mine": {"kind": "llamacpp", "base_url": engine.base_url, "max_samples_per_call": 3}}
    async with client(tmp_path, providers) as c:
        first = await c.chat(request("mine/smol"), n=3)
    assert len(first.samples) == 3 and all(s.text.strip() for s in first.samples)
    assert [x["n"] for x in call_lines(tmp_path / "calls.jsonl")] == [1, 1, 1]
    assert sum("returns at most 1 sample(s) per call" in r.getMessage() for r in caplog.records) == 1
    async with client(tmp_path, providers, log="rerun.jsonl") as c:
        again = await c.chat(request("mine/smol"), n=3)
    assert again.texts == first.texts and all(s.cached for s in again.samples)
    assert call_lines(tmp_path / "rerun.jsonl") == []


async def test_an_engine_dying_mid_run_is_resumed_by_one_restarted_on_another_port_from_the_cache(tmp_path):
    async with client(tmp_path, log="a.jsonl") as c:
        first = await c.chat(request(), n=2)
        engine_a = c._engines["llamacpp"]
        os.kill(engine_a.pid, signal.SIGKILL)  # the engine dies mid-run
        with pytest.raises(EngineError, match=r"died mid-run with code -9.*run again to resume"):
            await c.chat(request(), n=3)
    assert [x["n"] for x in call_lines(tmp_path / "a.jsonl")] == [1, 1]

    port_a = int(engine_a.base_url.rsplit(":", 1)[1].split("/")[0])
    port_b = next(p for p in iter(free_port, None) if p != port_a)
    async with client(tmp_path, {"llamacpp": {"kind": "llamacpp", "options": {"port": port_b}}}, log="b.jsonl") as c:
        resumed = await c.chat(request(), n=3)  # the rerun: 2 from the cache, 1 drawn
        engine_b = c._engines["llamacpp"]
        assert engine_b.base_url == f"http://127.0.0.1:{port_b}/v1" and engine_b.alive()
    assert not engine_b.alive() and not local_engine._pid_running(engine_b.pid), "the client stops its engine"
    assert resumed.texts[:2] == first.texts and [s.cached for s in resumed.samples] == [True, True, False]
    assert len(call_lines(tmp_path / "b.jsonl")) == 1


def test_the_endpoint_identity_names_the_model_content_and_settings_not_the_port(tmp_path):
    digest = file_sha256(smollm2_path())
    base = endpoint_identity(EngineSpec(port=8001))
    assert base == endpoint_identity(EngineSpec(port=8002, logits_all=True)) and digest in base
    assert endpoint_identity(EngineSpec(n_ctx=2048)) != base
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(b"GGUF" + b"\0" * 60)
    assert digest not in endpoint_identity(EngineSpec(gguf=str(copy)))


def test_a_model_hash_is_remembered_by_path_size_and_mtime(tmp_path, hash_memo, monkeypatch, caplog):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\1" * 100)
    real = file_sha256(model)
    memo = json.loads(hash_memo.read_text())
    (key,) = memo
    assert memo[key] == real and key.startswith(str(model))
    hash_memo.write_text(json.dumps({key: "f" * 64}))  # a remembered hash is not computed again
    monkeypatch.setattr(local_engine, "_HASHES", {})
    assert file_sha256(model) == "f" * 64
    os.utime(model, ns=(1, 1))  # another mtime: hashed again
    assert file_sha256(model) == real
    hash_memo.write_text("{not json")
    monkeypatch.setattr(local_engine, "_HASHES", {})
    with caplog.at_level(logging.WARNING, logger="picaco.llm.local_engine"):
        assert file_sha256(model) == real
    assert any("ignoring the model hash memo" in r.getMessage() for r in caplog.records)
    assert json.loads(hash_memo.read_text())  # rewritten whole


async def test_bad_model_files_and_options_are_one_line_config_errors(tmp_path):
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_text("<html>404</html>")
    cases = {str(tmp_path / "missing.gguf"): "no such file", str(not_gguf): "not a GGUF file",
             str(tmp_path): "not a file"}
    for gguf, message in cases.items():
        async with client(tmp_path, {"bad": {"kind": "llamacpp", "options": {"gguf": gguf}}}) as c:
            with pytest.raises(ConfigError, match=message) as info:
                await c.chat(request("bad/x"))
        assert gguf in str(info.value) and "\n" not in str(info.value)
    async with client(tmp_path, {"bad": {"kind": "llamacpp", "options": {"n_gpu": 1}}}) as c:
        with pytest.raises(ConfigError, match=r"provider 'bad': options.n_gpu: unknown option \(known: .*gguf"):
            await c.chat(request("bad/x"))


def test_an_engine_dying_at_start_shows_the_last_line_of_its_log(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(EngineError, match=r"exited with code \d+ at start: .+\(log: ") as info:
        LocalEngine(EngineSpec(gguf=str(broken)), log_dir=tmp_path).start()
    assert "\n" not in str(info.value)


def test_local_server_cli_errors_are_one_line(engine, tmp_path):
    port = int(engine.base_url.rsplit(":", 1)[1].split("/")[0])
    runner = CliRunner()
    taken = runner.invoke(app, ["local-server", "--port", str(port)])
    assert taken.exit_code == 2 and f"port {port} on 127.0.0.1 is already taken" in taken.output
    missing = runner.invoke(app, ["local-server", "--gguf", str(tmp_path / "none.gguf")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    small = runner.invoke(app, ["local-server", "--n-ctx", "3"])
    assert small.exit_code == 2 and "local-server: --n-ctx: Input should be greater than or equal to 64" in small.output
    assert all(len(r.output.strip().splitlines()) == 1 for r in (taken, missing, small))


def test_local_server_serves_until_interrupted_and_stops_its_engine(monkeypatch):
    seen: list[str] = []
    started: list[LocalEngine] = []
    real_start = LocalEngine.start

    def start(self):
        started.append(self)
        return real_start(self)

    def echo(line: str) -> None:
        seen.append(line)
        if "Ctrl-C stops it" in line:
            raise KeyboardInterrupt  # what a Ctrl-C does once the engine answers

    monkeypatch.setattr(LocalEngine, "start", start)
    local_engine.serve(EngineSpec(n_ctx=512), echo=echo)
    (engine,) = started
    assert seen[0].startswith(f"llama.cpp engine (pid {engine.pid}") and engine.base_url in seen[0]
    assert "kind: llamacpp, base_url" in seen[1] and seen[-1] == "stopping the engine"
    assert not engine.alive() and not local_engine._pid_running(engine.pid)


def test_a_taken_port_is_refused_before_starting(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already taken"):
            LocalEngine(EngineSpec(port=port), log_dir=tmp_path).start()


async def test_a_judge_reply_under_the_schema_parses(engine, tmp_path):
    """llama.cpp constrains the reply with the json_object+schema form (its default schema_form)."""
    from picaco.llm.request import scores_schema
    from picaco.templates import parse_value_scores

    names = ["honesty", "kindness"]
    providers = {"mine": {"kind": "llamacpp", "base_url": engine.base_url}}
    async with client(tmp_path, providers) as c:
        reply = await c.chat(ChatRequest.of("mine/smol", None, "Rate the answer 'Paris is in France' for honesty "
                                            "and kindness, 1-5, as JSON.", role="judge", seed=3, temperature=1.0,
                                            max_tokens=40, response_schema=scores_schema(names)), n=1)
    scores = parse_value_scores(reply.text, names)
    assert set(json.loads(reply.text)) == set(names) and all(1 <= s <= 5 for s in scores.values())


async def test_an_optimizer_reply_under_the_schema_is_an_instruction(engine, tmp_path):
    """SmolLM2 does not write Fig. 8's <INS> tags; under the optimizer's schema the engine's reply is
    {"instruction": "..."}, which the M-step's parser reads (picaco.optimizer_schema)."""
    from picaco.llm.request import instruction_schema
    from picaco.templates import ReplyParseError, parse_proposal

    providers = {"mine": {"kind": "llamacpp", "base_url": engine.base_url}}
    async with client(tmp_path, providers) as c:
        reply = await c.chat(ChatRequest.of("mine/smol", "You are an expert in LLM instructions.",
                                            "Write a one-sentence instruction that makes an assistant's answers "
                                            "helpful and honest.", role="optimizer", seed=3, temperature=0.0,
                                            max_tokens=80, response_schema=instruction_schema()), n=1)
    assert set(json.loads(reply.text)) == {"instruction"}
    assert parse_proposal(reply.text, length=60, schema=True) == json.loads(reply.text)["instruction"].strip()
    with pytest.raises(ReplyParseError, match="no_tag"):  # the paper's parser alone reads nothing
        parse_proposal(reply.text, length=60)
