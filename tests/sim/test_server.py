"""The simulator HTTP server on the wire: shapes, determinism, faults, auth, the request log, the CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from picaco.sim.engine import SimEngine
from picaco.sim.server import (
    SimServerConfig,
    build_parser,
    config_from_args,
    config_to_argv,
    main,
    start_server_process,
)
from picaco.sim.server_flags import FLAGS as _FLAGS
from picaco.sim.worlds import make_world

HTTP = httpx.Client()  # keep-alive: a fresh client per request costs ~30 ms here
PROMPT = "Which fruit keeps longest in a cold cellar, apples or pears, and why does it matter for winter storage?"


def chat(url: str, *, n: int = 1, seed: int | None = 1, content: str = PROMPT, headers=None, timeout=5.0, **extra):
    body = {"model": "sim-a", "messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": content}], "n": n, **extra}
    if seed is not None:
        body["seed"] = seed
    return HTTP.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=timeout)


def gemini_chat(url: str, *, n: int = 1, seed: int | None = 1, content: str = PROMPT, headers=None, **gen):
    body = {"systemInstruction": {"parts": [{"text": "Be brief."}], "role": "user"},
            "contents": [{"role": "user", "parts": [{"text": content}]}],
            "generationConfig": {"candidateCount": n, **({"seed": seed} if seed is not None else {}), **gen}}
    return HTTP.post(url + "/v1beta/models/sim-a:generateContent", json=body, headers=headers, timeout=5.0)


def texts(r: httpx.Response) -> list[str]:
    return [c["message"]["content"] for c in r.json()["choices"]]


# ---- OpenAI shapes and determinism ---------------------------------------------------------------------


def test_chat_returns_n_choices_with_usage_and_request_id(server):
    r = chat(server.url, n=3)
    assert r.status_code == 200
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert all(c["finish_reason"] == "stop" and c["message"]["role"] == "assistant" for c in body["choices"])
    rid = r.headers["x-request-id"]
    assert rid and body["id"].endswith(rid)
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_reply_text_is_the_engines_and_follows_seed_plus_k(server):
    r = chat(server.url, n=3, seed=11)
    got = texts(r)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
    assert got == SimEngine(make_world("echo")).chat("sim-a", messages, n=3, seed=11, temperature=1.0).texts
    assert len(set(got)) > 1  # samples differ at temperature 1
    assert texts(chat(server.url, n=3, seed=11)) == got  # same request, same text
    assert texts(chat(server.url, n=1, seed=12)) == got[1:2]  # sample k is drawn with seed+k
    assert texts(chat(server.url, n=2, seed=12)) == got[1:3]
    assert texts(chat(server.url, n=3, seed=99)) != got


def test_temperature_zero_gives_identical_samples(server):
    got = texts(chat(server.url, n=3, temperature=0.0))
    assert len(set(got)) == 1


def test_stop_and_max_tokens_change_finish_reason(server):
    full = texts(chat(server.url, seed=5))[0]
    word = full.split()[2]
    r = chat(server.url, seed=5, stop=[word])
    assert texts(r)[0] == full[: full.find(word)]
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    r = chat(server.url, seed=5, max_tokens=4)
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert len(texts(r)[0].split()) < len(full.split())


def test_bad_requests_get_openai_400s(server):
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "m"}, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = chat(server.url, temperature=3.0)
    assert r.status_code == 400 and "temperature" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", timeout=5)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_embeddings_float_and_base64_in_input_order(server):
    inputs = ["red apples", "green pears in winter", "a cold cellar"]
    expected = SimEngine(make_world("echo")).embed("emb", inputs)
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "emb", "input": inputs, "encoding_format": "float"})
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    got = np.array([d["embedding"] for d in data], dtype=np.float32)
    assert got.shape == (3, 256)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    assert r.json()["usage"]["prompt_tokens"] > 0
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "emb", "input": "red apples",
                                                         "encoding_format": "base64"})
    vec = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vec, expected[0])
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "emb", "input": []})
    assert r.status_code == 400


def test_models_listing(make_server):
    s = make_server(models=["alpha", "beta"])
    assert [m["id"] for m in httpx.get(s.url + "/v1/models").json()["data"]] == ["alpha", "beta"]
    assert chat(s.url, content="x").status_code == 404
    assert chat(s.url, content="x").json()["error"]["code"] == "model_not_found"


# ---- Gemini --------------------------------------------------------------------------------------------


def test_gemini_generate_content_matches_the_openai_route(server):
    r = gemini_chat(server.url, n=2, seed=3, temperature=1.0)
    assert r.status_code == 200
    body = r.json()
    assert [c["finishReason"] for c in body["candidates"]] == ["STOP", "STOP"]
    got = [c["content"]["parts"][0]["text"] for c in body["candidates"]]
    assert got == texts(chat(server.url, n=2, seed=3))  # one engine behind both APIs
    meta = body["usageMetadata"]
    assert meta["totalTokenCount"] == meta["promptTokenCount"] + meta["candidatesTokenCount"]
    r = gemini_chat(server.url, seed=3, maxOutputTokens=3)
    assert r.json()["candidates"][0]["finishReason"] == "MAX_TOKENS"
    # google-genai 3.x posts to /v1/..., older releases to /v1beta/...: both are served
    v1 = httpx.post(server.url + "/v1/models/sim-a:generateContent", content=r.request.content,
                    headers={"content-type": "application/json"})
    assert v1.json()["candidates"] == r.json()["candidates"]


def test_gemini_embeddings(server):
    inputs = ["red apples", "green pears"]
    r = httpx.post(server.url + "/v1beta/models/emb:batchEmbedContents",
                   json={"requests": [{"model": "models/emb", "content": {"parts": [{"text": t}]}} for t in inputs]})
    got = np.array([e["values"] for e in r.json()["embeddings"]], dtype=np.float32)
    np.testing.assert_allclose(got, SimEngine(make_world("echo")).embed("emb", inputs), atol=1e-7)
    r = httpx.post(server.url + "/v1beta/models/emb:embedContent", json={"content": {"parts": [{"text": "red apples"}]}})
    np.testing.assert_allclose(r.json()["embedding"]["values"], got[0], atol=1e-7)
    assert httpx.post(server.url + "/v1beta/models/emb:frobnicate", json={}).status_code == 404


# ---- faults, latency, context, auth ----------------------------------------------------------------------


def test_429_carries_retry_after_headers(make_server):
    s = make_server(rate_429=1.0, retry_after_s=0.05)
    r = chat(s.url)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "0.05" and r.headers["retry-after-ms"] == "50"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    g = gemini_chat(s.url)
    assert g.status_code == 429 and g.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert g.json()["error"]["details"][0]["retryDelay"] == "0.05s"


def test_500_truncated_malformed_and_filtered(make_server):
    assert chat(make_server(rate_500=1.0).url).status_code == 500
    r = chat(make_server(rate_truncated=1.0).url)
    assert r.status_code == 200 and r.content.startswith(b'{"id":')
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)
    r = chat(make_server(rate_malformed=1.0).url)
    assert r.status_code == 200 and "choices" not in r.json()
    s = make_server(rate_filtered=1.0)
    r = chat(s.url, n=2)
    assert [c["finish_reason"] for c in r.json()["choices"]] == ["content_filter"] * 2
    assert gemini_chat(s.url).json()["promptFeedback"]["blockReason"] == "SAFETY"


def test_fault_draws_are_seeded_and_mixed(make_server):
    def statuses(seed):
        s = make_server(rate_500=0.3, rate_429=0.2, retry_after_s=0.01, seed=seed)
        return [chat(s.url, content="q").status_code for _ in range(30)]

    first = statuses(7)
    assert first == statuses(7)
    assert {200, 429, 500} <= set(first)
    assert first != statuses(8)


def test_latency_and_jitter(make_server):
    s = make_server(latency_ms=120, jitter_ms=40, seed=1)
    t = time.perf_counter()
    assert chat(s.url).status_code == 200
    assert time.perf_counter() - t >= 0.12  # the injected latency was waited (how much longer is the machine's)
    logged = s.request_log()[-1]["latency_ms"]
    assert 120 <= logged <= 160 + 50


def test_hang_past_client_timeout_is_logged_as_client_gone(make_server):
    s = make_server(rate_hang=1.0, hang_s=5.0)
    t = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        chat(s.url, timeout=0.3)
    assert time.perf_counter() - t < 5.0  # the client's timeout ended it, not the 5 s hang
    deadline = time.monotonic() + 3
    while not s.request_log() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(e["status"], e["fault"]) for e in s.request_log()] == [(499, "hang")]


def test_hang_then_drop_or_answer(make_server):
    with pytest.raises(httpx.RemoteProtocolError):
        chat(make_server(rate_hang=1.0, hang_s=0.05, hang_then="drop").url)
    s = make_server(rate_hang=1.0, hang_s=0.05, hang_then="answer")
    r = chat(s.url)
    assert r.status_code == 200 and texts(r)
    assert s.request_log()[-1]["fault"] == "hang"


def test_context_too_long_in_both_shapes(make_server):
    s = make_server(max_context_tokens=20)
    assert chat(s.url, content="short").status_code == 200
    r = chat(s.url)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "context_length_exceeded" and "maximum context length is 20 tokens" in err["message"]
    g = gemini_chat(s.url)
    assert g.status_code == 400 and g.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "exceeds the maximum number of tokens allowed (20)" in g.json()["error"]["message"]


def test_api_key_required(make_server):
    s = make_server(api_key="sim-key-123")
    assert chat(s.url).status_code == 401
    assert chat(s.url, headers={"authorization": "Bearer wrong"}).json()["error"]["code"] == "invalid_api_key"
    assert chat(s.url, headers={"authorization": "Bearer sim-key-123"}).status_code == 200
    assert gemini_chat(s.url).status_code == 403
    wrong = gemini_chat(s.url, headers={"x-goog-api-key": "wrong"})
    assert wrong.status_code == 400 and wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert gemini_chat(s.url, headers={"x-goog-api-key": "sim-key-123"}).status_code == 200
    assert "sim-key-123" not in repr(SimServerConfig(api_key="sim-key-123"))


# ---- the request log ------------------------------------------------------------------------------------


def test_request_log_in_memory_over_http_and_jsonl(make_server, tmp_path):
    path = tmp_path / "logs" / "requests.jsonl"
    s = make_server(log_path=path, rate_500=0.5, seed=3)
    codes = [chat(s.url, n=2).status_code for _ in range(6)]
    log = s.request_log()
    assert [e["status"] for e in log] == codes
    assert all(e["path"] == "/v1/chat/completions" and e["model"] == "sim-a" and e["n"] == 2 for e in log)
    assert [e["fault"] for e in log] == ["500" if c == 500 else None for c in codes]
    assert all(isinstance(e["latency_ms"], float) and e["time"] > 0 for e in log)
    assert httpx.get(s.url + "/_sim/log").json() == log
    assert [json.loads(line) for line in path.read_text().splitlines()] == log
    assert httpx.post(s.url + "/_sim/reset").status_code == 200
    assert s.request_log() == [] and httpx.get(s.url + "/_sim/log").json() == []
    assert len(path.read_text().splitlines()) == 6  # the file keeps everything
    assert httpx.get(s.url + "/_sim/health").json()["ok"] is True


# ---- config, CLI and the process helper ---------------------------------------------------------------------


def test_config_validation():
    with pytest.raises(ValidationError, match="sum to"):
        SimServerConfig(rate_500=0.7, rate_429=0.5)
    with pytest.raises(ValidationError, match="rate_hang"):
        SimServerConfig(rate_hang=1.5)
    with pytest.raises(ValidationError, match="extra"):
        SimServerConfig(latency=3)


def test_every_config_field_has_a_flag_and_round_trips():
    assert set(_FLAGS) | {"api_key"} == set(SimServerConfig.model_fields)
    cfg = SimServerConfig(port=1234, seed=9, latency_ms=100, jitter_ms=5, rate_429=0.1, retry_after_s=0.05,
                          rate_hang=0.1, hang_s=2, hang_then="answer", max_context_tokens=99,
                          models=["a", "b"], log_path="/tmp/x.jsonl", http="h11", rate_filtered=0.1)
    assert config_from_args(config_to_argv(cfg)) == cfg
    assert "--api-key-env" in build_parser().format_help()


def test_main_rejects_bad_flags_in_one_line(capsys):
    assert main(["--rate-500", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --rate-500: rate_500 must be within [0, 1]") and "\n" not in err
    os.environ.pop("PICACO_TEST_UNSET_KEY", None)
    assert main(["--api-key-env", "PICACO_TEST_UNSET_KEY"]) == 2
    assert "PICACO_TEST_UNSET_KEY" in capsys.readouterr().err


def test_server_process_serves_logs_and_stops():
    s = start_server_process(SimServerConfig(latency_ms=10, api_key="proc-key"))
    try:
        assert chat(s.url).status_code == 401
        ok = chat(s.url, headers={"authorization": "Bearer proc-key"})
        assert ok.status_code == 200
        log = s.request_log()
        assert [e["status"] for e in log] == [401, 200]
        pid = s.proc.pid
        assert "proc-key" not in " ".join(s.proc.args)  # the key travels by environment only
    finally:
        s.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(s.url + "/_sim/health", timeout=1)


def test_server_process_that_cannot_start_reports_its_error_line():
    from picaco.procs import ProcessError

    with pytest.raises(ProcessError, match=r"^sim server process exited with 2:\nerror: unknown sim world 'nope'"):
        start_server_process(SimServerConfig(world="nope"))


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "picaco.sim.server", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "--rate-429" in out.stdout and "--latency-ms" in out.stdout
