"""`picaco serve` with the real openai SDK: the instruction reaches the target as its system prompt, the
server's key (never the application's) goes to the target and nowhere else, streams are relayed chunk by
chunk, target errors pass through scrubbed, bad input is one line."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import openai
import pytest
import yaml
from serve_upstreams import AsgiThread, GatedStream, RecordingSim
from typer.testing import CliRunner

from picaco.cli import app
from picaco.deploy.serving import Served, ServeThread
from picaco.sim.server import SimServerConfig

SERVER_KEY = "sk-serverside-0123456789abcdefXYZ"
APP_KEY = "sk-application-should-not-travel-42"
KEY_ENV = "PICACO_SERVE_TEST_KEY"
runner = CliRunner()


def target_config(tmp_path, base_url: str, name: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "models": {"target": f"{name}/sim-target"},
        "client": {"providers": {name: {"kind": "openai", "base_url": base_url, "api_key_env": KEY_ENV}}}}))
    return str(path)


@pytest.fixture(scope="module")
def key_env():
    os.environ[KEY_ENV] = SERVER_KEY
    yield
    del os.environ[KEY_ENV]


@pytest.fixture(scope="module")
def upstream(key_env):
    # the target wants the server's key, and its error bodies echo the credentials they were sent
    rec = RecordingSim(SimServerConfig(api_key=SERVER_KEY, echo_auth_in_errors=True))
    server = AsgiThread(rec)
    yield rec, server
    server.stop()


@pytest.fixture(scope="module")
def serve(finished_run, upstream, tmp_path_factory):
    runs_dir, config, result = finished_run
    target = target_config(tmp_path_factory.mktemp("target"), upstream[1].base_url, "lab")
    with ServeThread(Served(runs_dir, config.run_name, port=0, target=target)) as s:
        yield s


def test_plain_call_reaches_the_target_with_the_instruction_and_the_server_key(serve, upstream, finished_run):
    rec, _ = upstream
    result = finished_run[2]
    client = openai.OpenAI(base_url=serve.base_url, api_key=APP_KEY, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o-mini", seed=3,
                                           messages=[{"role": "user", "content": "How do I plan a family trip?"}])
    assert reply.choices[0].message.content and reply.model == "sim-target"
    seen = rec.seen[-1]
    assert seen["path"] == "/v1/chat/completions" and seen["body"]["model"] == "sim-target"
    assert seen["body"]["messages"] == [{"role": "system", "content": result.best_instruction},
                                        {"role": "user", "content": "How do I plan a family trip?"}]
    assert seen["body"]["seed"] == 3
    assert seen["headers"]["authorization"] == f"Bearer {SERVER_KEY}"
    assert not any(APP_KEY in v for v in seen["headers"].values())
    logged = rec.sim.request_log()[-1]  # the simulator's own log: answered, for the target's model
    assert logged["status"] == 200 and logged["model"] == "sim-target"


def test_application_system_message_is_merged_after_the_instruction(serve, upstream, finished_run):
    rec, _ = upstream
    instruction = finished_run[2].best_instruction
    client = openai.OpenAI(base_url=serve.base_url, api_key=APP_KEY, max_retries=0)
    client.chat.completions.create(model="x", messages=[{"role": "system", "content": "Answer in French."},
                                                        {"role": "user", "content": "Hi"}])
    assert rec.seen[-1]["body"]["messages"] == [{"role": "system", "content": f"{instruction}\n\nAnswer in French."},
                                                {"role": "user", "content": "Hi"}]


def test_models_lists_the_served_model(serve):
    client = openai.OpenAI(base_url=serve.base_url, api_key=APP_KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["sim-target"]


def test_stream_from_a_target_that_answers_in_one_body_matches_the_plain_call(serve):
    async def go():
        client = openai.AsyncOpenAI(base_url=serve.base_url, api_key=APP_KEY, max_retries=0)
        messages = [{"role": "user", "content": "What matters in a good apology?"}]
        plain = await client.chat.completions.create(model="x", seed=5, messages=messages)
        stream = await client.chat.completions.create(model="x", seed=5, messages=messages, stream=True)
        text, reasons = "", []
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            reasons.append(chunk.choices[0].finish_reason)
        await client.close()
        return plain.choices[0].message.content, text, reasons

    plain, streamed, reasons = asyncio.run(go())
    assert streamed == plain and reasons[-1] == "stop"


def test_stream_is_relayed_chunk_by_chunk(finished_run, key_env, tmp_path):
    runs_dir, config, _ = finished_run
    pieces = ["Care ", "for ", "others, ", "always."]
    gated = GatedStream(pieces)
    upstream = AsgiThread(gated)
    try:
        target = target_config(tmp_path, upstream.base_url, "gate")
        with ServeThread(Served(runs_dir, config.run_name, port=0, target=target)) as s:
            client = openai.OpenAI(base_url=s.base_url, api_key=APP_KEY, max_retries=0, timeout=20)
            stream = client.chat.completions.create(model="x", stream=True,
                                                    messages=[{"role": "user", "content": "Hi"}])
            got = []
            for chunk in stream:
                got.append(chunk.choices[0].delta.content)
                # this chunk arrived while the target had sent no more than it: nothing was held back
                assert gated.sent == len(got)
                gated.release()
            assert got == pieces
    finally:
        upstream.stop()


def test_target_errors_pass_through_with_status_and_scrubbed(serve, upstream, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    client = openai.OpenAI(base_url=serve.base_url, api_key=APP_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="x", temperature=7, messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 400
    message = err.value.body["message"]
    assert "temperature" in message and "***" in message  # the target echoed a credential: scrubbed
    assert SERVER_KEY not in message and SERVER_KEY[8:20] not in message
    out, errout = capfd.readouterr()
    assert SERVER_KEY not in caplog.text + out + errout


def test_unreachable_target_is_a_502(finished_run, key_env, tmp_path):
    runs_dir, config, _ = finished_run
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    target = target_config(tmp_path, f"http://127.0.0.1:{port}/v1", "gone")
    with ServeThread(Served(runs_dir, config.run_name, port=0, target=target)) as s:
        client = openai.OpenAI(base_url=s.base_url, api_key=APP_KEY, max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 502 and "unreachable" in err.value.body["message"]


def test_default_target_is_the_runs_own_sim_model_and_demonstrations_use_fig7(finished_run):
    runs_dir, config, result = finished_run
    with ServeThread(Served(runs_dir, config.run_name, port=0, demonstrations=True)) as s:
        assert s.served.sim is not None and s.served.target.model == "target"
        prompt = s.served.system_prompt
        assert prompt.startswith("Below is a list of conversations") and result.best_instruction in prompt
        assert prompt.count("# Query:") == config.picaco.demos_per_bucket
        client = openai.OpenAI(base_url=s.base_url, api_key=APP_KEY, max_retries=0)
        reply = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi there"}])
        assert reply.choices[0].message.content
        assert s.served.sim.request_log()[-1]["status"] == 200
    assert s.served.sim is None  # the simulator started for the sim target stopped with the server


def test_bad_input_is_one_line(finished_run, tmp_path):
    runs_dir, config, _ = finished_run
    out = runner.invoke(app, ["serve", "--run", "nope", "--runs-dir", str(runs_dir)])
    assert out.exit_code == 2 and out.output.startswith("error: no run 'nope'") and out.output.count("\n") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = runner.invoke(app, ["serve", "--run", config.run_name, "--runs-dir", str(runs_dir), "--port", str(port)])
    assert out.exit_code == 2 and f"127.0.0.1:{port} is already in use" in out.output and out.output.count("\n") == 1
    out = runner.invoke(app, ["serve", "--run", config.run_name, "--runs-dir", str(runs_dir),
                              "--target", "gemini/gemini-1.5-flash"])
    assert out.exit_code == 2 and "kind 'gemini'" in out.output and out.output.count("\n") == 1
    out = runner.invoke(app, ["serve", "--run", config.run_name, "--runs-dir", str(runs_dir), "--target", "nomodel"])
    assert out.exit_code == 2 and "--target" in out.output and out.output.count("\n") == 1


def test_demonstrations_other_than_the_runs_are_refused(finished_run, tmp_path):
    import json
    import shutil

    runs_dir, config, _ = finished_run
    shutil.copytree(runs_dir, tmp_path / "runs")
    path = tmp_path / "runs" / config.run_name / "config.json"
    stored = json.loads(path.read_text())
    stored["inputs"]["composition"]["demonstrations"] = "0" * 16  # the run was optimized with other ones
    path.write_text(json.dumps(stored))
    out = runner.invoke(app, ["serve", "--run", config.run_name, "--runs-dir", str(tmp_path / "runs"),
                              "--demonstrations", "--port", "0"])
    assert out.exit_code == 2 and "not the ones run 'shipped' was optimized with" in out.output
    assert out.output.count("\n") == 1
