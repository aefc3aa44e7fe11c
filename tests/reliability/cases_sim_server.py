"""Campaign cases: `picaco sim-server` started with bad flags, and the running server sent bad bodies.

The flag cases run the real command in a subprocess with a time limit: if a bad flag were accepted, the
server would start and serve, and the case reports that instead of hanging. The body cases start the
server in this process and post to it; there the "exit" is the HTTP status, the error line is the
answer's message, and every line the server logs while answering (a traceback, say) counts as another
line the operator sees.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from reliability_campaign import Case, Seen, nothing_half_written

CLI_TIMEOUT_S = 20.0


def sim_cli(*args: str) -> Seen:
    """`picaco sim-server ARGS` as the user runs it; a server that starts is stopped after CLI_TIMEOUT_S."""
    argv = [sys.executable, "-m", "picaco.cli", "sim-server", *args]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        return Seen(exit_code=0, stdout=str(exc.stdout or ""),
                    stderr=f"the server started and was still serving after {CLI_TIMEOUT_S:.0f} s")
    return Seen(exit_code=out.returncode, stdout=out.stdout, stderr=out.stderr,
                traceback="Traceback (most recent call last)" in out.stderr)


def _port_in_use(root: Path) -> Seen:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        return sim_cli("--port", str(taken.getsockname()[1]))


def _log_path_under_a_file(root: Path) -> Seen:
    (root / "afile").write_text("x", encoding="utf-8")
    return sim_cli("--log-path", str(root / "afile" / "requests.jsonl"))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.traceback = False

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.traceback = self.traceback or record.exc_info is not None


def _answer(status: int, body: bytes, logged: _Records) -> Seen:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode(errors="replace")
    stderr = "\n".join([f"HTTP {status}: {message}", *logged.lines])
    exit_code = status if status >= 400 else 0 if status else 1  # 0: no answer came at all
    return Seen(exit_code=exit_code, stderr=stderr, traceback=logged.traceback)


def _against_server(send, **config):
    """Start a server, run send(url) -> (status, body) while its log is watched, stop it."""
    from picaco.sim.server import SimServerConfig, start_server_thread

    def act(root: Path) -> Seen:
        server = start_server_thread(SimServerConfig(**config))
        logged = _Records()
        logger = logging.getLogger("uvicorn.error")  # where uvicorn reports an exception that escaped the app
        logger.addHandler(logged)  # after the start: uvicorn's logging set-up drops handlers it finds
        try:
            status, body = send(server.url)
        finally:
            logger.removeHandler(logged)
            server.stop()
        return _answer(status, body, logged)

    return act


def _post_nested(url: str) -> tuple[int, bytes]:
    import httpx

    body = b'{"model": "sim", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"},
                   timeout=30)
    return r.status_code, r.content


def _declare_300_mb(url: str) -> tuple[int, bytes]:
    """Send only the headers of a 300 MB request: an answer can only come from the limit, not the body."""
    parts = urlsplit(url)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
            b"Content-Length: 300000000\r\n\r\n")
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            if not reply:
                return 0, b"no answer within 10 s: the server waited for the 300 MB body"
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.split(b"\r\n\r\n", 1)[1]


def _help_lists_flags(root: Path) -> Seen:
    return sim_cli("--help")


CASES = [
    Case("V01", "sim-server", "the port is already in use (was an OSError traceback)",
         r"^error: cannot listen on 127\.0\.0\.1:\d+: Address already in use$", "nothing", _port_in_use),
    Case("V02", "sim-server", "a port that is not a number (was the whole usage block, then the error)",
         r"^error: argument --port: invalid int value: 'abc'$", "nothing", lambda root: sim_cli("--port", "abc")),
    Case("V03", "sim-server", "a fault rate above 1", r"^error: --rate-429: rate_429 must be within \[0, 1\], got 2\.0$",
         "nothing", lambda root: sim_cli("--rate-429", "2")),
    Case("V04", "sim-server", "a value outside a flag's choices",
         r"^error: argument --hang-then: invalid choice: 'maybe'", "nothing", lambda root: sim_cli("--hang-then", "maybe")),
    Case("V05", "sim-server", "a body limit of 0", r"^error: --max-body-mb: max_body_mb must be > 0", "nothing",
         lambda root: sim_cli("--max-body-mb", "0")),
    Case("V06", "sim-server", "--log-path under a file (was a traceback)",
         r"^error: --log-path .*afile/requests\.jsonl: .*afile is a file, not a folder$", "nothing but the file",
         _log_path_under_a_file, nothing_half_written),
    Case("V07", "sim-server", "`picaco sim-server --help` (listed no flags; only -h did)",
         r"--max-body-mb.*--rate-429|--rate-429.*--max-body-mb", "nothing", _help_lists_flags, expect_exit=0),
    Case("V08", "sim-server", "a body nested 100,000 deep (was a 500, and a traceback in the server log)",
         r"^HTTP 400: the request body nests JSON too deeply to parse$", "nothing", _against_server(_post_nested),
         expect_exit=400),
    Case("V09", "sim-server", "a 300 MB request body (took 42 s and 1.6 GB; now refused from its headers)",
         r"^HTTP 413: the request body of 300000000 bytes is over this server's limit of 8388608 bytes",
         "nothing", _against_server(_declare_300_mb), expect_exit=413),
]


def oversized_body(work: Path) -> dict:
    """300 MB streamed to a server in its own process: how long until it answers, and its peak memory."""
    import httpx

    from picaco.sim.server import SimServerConfig, start_server_process

    server = start_server_process(SimServerConfig())
    chunk = b" " * (1 << 16)
    t0 = time.perf_counter()
    try:
        try:
            r = httpx.post(server.url + "/v1/chat/completions", content=(chunk for _ in range(4800)), timeout=120)
            answer: object = r.status_code
        except httpx.TransportError as exc:  # the server closed the connection while the client still wrote
            answer = type(exc).__name__
        seconds = time.perf_counter() - t0
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    finally:
        server.stop()
    return {"body_mb": 300, "answer": answer, "seconds": round(seconds, 2), "server_peak_rss_mb": round(peak_kb / 1024)}


MEASURES = {"sim_oversized_body": oversized_body}
