"""The simulator server under hostile or mistaken input: bodies too deep or too large, bad flags, a port
in use. Each is a short answer (400/413) or one `error:` line, never a traceback."""

from __future__ import annotations

import json
import logging
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from picaco.cli import app
from picaco.sim.server import SimServerConfig, config_from_args, config_to_argv, main

CHAT = "/v1/chat/completions"
DEEP = b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def reply_until_closed(url: str, data: bytes) -> bytes:
    """Send `data` on a fresh socket and read until the server closes it (a socket timeout if it never does)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        return reply


@pytest.fixture
def server_errors(caplog):
    """The ERROR records the server logs (uvicorn logs an escaped exception with its traceback)."""
    caplog.set_level(logging.ERROR)
    return lambda: [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("path", [CHAT, "/v1beta/models/m:generateContent", "/v1/embeddings"])
def test_deeply_nested_json_is_a_400_without_traceback(make_server, server_errors, path):
    s = make_server()
    r = httpx.post(s.url + path, content=DEEP, headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "the request body nests JSON too deeply to parse"
    assert server_errors() == []
    assert [e["status"] for e in s.request_log()] == [400]


def test_declared_oversized_body_is_refused_before_it_is_sent(make_server):
    s = make_server(max_body_mb=1)
    head = (b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
            b"Content-Length: 300000000\r\n\r\n")
    reply = reply_until_closed(s.url, head)  # not one byte of the 300 MB is sent, yet the answer comes
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    assert b"connection: close" in rest.lower()
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_too_large"
    assert body["error"]["message"] == ("the request body of 300000000 bytes is over this server's limit of "
                                        "1048576 bytes (--max-body-mb)")


def test_streamed_oversized_body_is_cut_off_at_the_limit(make_server):
    s = make_server(max_body_mb=0.01)  # 10485 bytes
    chunks = (b" " * 4096 for _ in range(64))  # chunked: no Content-Length to refuse it by
    r = httpx.post(s.url + CHAT, content=chunks, timeout=10)
    assert r.status_code == 413 and "over this server's limit of 10485 bytes" in r.json()["error"]["message"]
    gemini = httpx.post(s.url + "/v1beta/models/m:generateContent", content=b" " * 20_000, timeout=10)
    assert gemini.status_code == 413 and gemini.json()["error"]["code"] == 413
    under = {"model": "m", "messages": [{"role": "user", "content": "word " * 1500}]}  # ~7.6 kB
    assert httpx.post(s.url + CHAT, json=under, timeout=10).status_code == 200
    assert [e["status"] for e in s.request_log()] == [413, 413, 200]


def test_client_gone_mid_body_is_logged_not_raised(make_server, server_errors):
    s = make_server()
    parts = urlsplit(s.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: sim\r\nContent-Length: 1000\r\n\r\n{\"mo")
    deadline = time.monotonic() + 10
    while not s.request_log() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e["status"] for e in s.request_log()] == [499]
    assert server_errors() == []


def test_body_limit_config_and_flag():
    assert SimServerConfig().max_body_bytes == 8 << 20
    cfg = SimServerConfig(max_body_mb=2.5)
    assert config_to_argv(cfg) == ["--max-body-mb", "2.5"] and config_from_args(config_to_argv(cfg)) == cfg
    with pytest.raises(ValueError, match="max_body_mb must be > 0"):
        SimServerConfig(max_body_mb=0)


def test_help_through_picaco_lists_the_flags():
    result = CliRunner().invoke(app, ["sim-server", "--help"])
    assert result.exit_code == 0
    assert "--rate-429" in result.stdout and "--max-body-mb" in result.stdout and "--latency-ms" in result.stdout


@pytest.mark.parametrize(("argv", "line"), [
    (["--port", "abc"], "error: argument --port: invalid int value: 'abc'"),
    (["--hang-then", "maybe"], "error: argument --hang-then: invalid choice: 'maybe' (choose from 'answer', 'drop')"),
    (["--bogus"], "error: unrecognized arguments: --bogus"),
    (["--max-body-mb", "-1"], "error: --max-body-mb: max_body_mb must be > 0, got -1.0"),
    (["--port", "70000"], "error: --port: port must be within [0, 65535], got 70000"),
    (["--rate-429", "0.6", "--rate-500", "0.6"], "error: fault rates sum to 1.2, more than 1"),
    (["--world", "nope"], "error: unknown sim world 'nope': choose one of values, values-null, values-harm-flipped, echo"),
])
def test_bad_flags_are_one_line(capsys, argv, line):
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.err == line + "\n" and out.out == ""


def test_port_in_use_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 2
    assert capsys.readouterr().err == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_log_path_under_a_file_is_one_line_and_creates_nothing(tmp_path, capsys):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    assert main(["--log-path", str(tmp_path / "afile" / "log.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --log-path {tmp_path / 'afile' / 'log.jsonl'}: {tmp_path / 'afile'} is a file, not a folder\n"
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]
