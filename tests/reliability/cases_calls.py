"""Campaign cases of the call layer (K01..): what a provider or gateway answers, and a missing key.

Every gateway here echoes the request's credentials in its error bodies (`echo_auth_in_errors` of the
simulator server, or a stub for the statuses it does not produce), as a careless proxy does: the user
must see one line naming provider, model and status, and the key must be nowhere (output, run files,
cache, call log). Measures: `secret_found`, `content_filtered_run_completed`,
`cached_rerun_without_key_calls`.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from reliability_campaign import Case, Seen, nothing_half_written, picaco, small_run_config, write_yaml

KEY = "sk-picacoTEST" + "Q7x" * 14  # the user's key in every case: it must never be shown or written
KEY_ENV = "PICACO_TEST_KEY"
NO_KEY = f"^(?!.*{KEY[:16]}).*"  # prefix of a `sees` regex: the line does not show the key


# -- gateways -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def sim_gateway(**fields) -> Iterator:
    """The simulator server (values world) echoing credentials in every error body."""
    from picaco.sim.server import SimServerConfig, start_server_thread

    fields.setdefault("world", "values")
    with start_server_thread(SimServerConfig(echo_auth_in_errors=True, **fields)) as server:
        yield server


@contextlib.contextmanager
def stub_gateway(status: int, message: str, reply: dict | None = None) -> Iterator[str]:
    """An OpenAI-shaped gateway answering every request with `status`, its body echoing Authorization
    (or with `reply` as the body, e.g. a 200 with an empty choice list)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = json.dumps(reply if reply is not None else {"error": {
                "message": f"{message} (Authorization: {self.headers.get('authorization')})",
                "type": "invalid_request_error", "param": None, "code": None}}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # the client stops its other concurrent requests after the first error and hangs up on them:
            # expected here, and not what the case is about (the default prints a traceback to stderr)
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


# -- runs ------------------------------------------------------------------------------------------------------
def gateway_config(root: Path, base_url: str, *, kind: str = "openai", name: str = "gw",
                   max_samples_per_call: int | None = None, **picaco_fields) -> dict:
    """A small run whose target, judge and optimizer are `name/...` at `base_url`; embeddings in-process.
    `max_samples_per_call` above the gateway's limit makes the client send an `n` the gateway refuses."""
    raw = small_run_config(root)
    raw["models"] = {"target": f"{name}/sim-target", "judge": f"{name}/sim-judge", "embedding": "sim/embed"}
    raw["client"]["providers"][name] = {"kind": kind, "base_url": base_url, "api_key_env": KEY_ENV, "timeout_s": 10}
    if max_samples_per_call is not None:
        raw["client"]["providers"][name]["max_samples_per_call"] = max_samples_per_call
    raw["client"]["retry"] = {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.05}
    raw["picaco"].update(picaco_fields)
    return raw


def optimize(root: Path, raw: dict, env: dict | None = None) -> Seen:
    config = write_yaml(root / "run.yaml", raw)
    return picaco("optimize", "--config", str(config), env={KEY_ENV: KEY, **(env or {})})


def key_nowhere(root: Path) -> str | None:
    """No file under the case's directory (run files, calls.jsonl, every byte of the cache) holds the key."""
    leaks = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    return f"the key was written to {leaks}" if leaks else nothing_half_written(root)


def result_reports_filtered(root: Path) -> str | None:
    result = root / "runs" / "r" / "result.json"
    if not result.exists():
        return "no result.json"
    data = json.loads(result.read_text())
    if not data.get("filtered_replies"):
        return f"result.json reports no filtered replies: {data.get('filtered_replies')!r}"
    return key_nowhere(root)


# -- the cases -------------------------------------------------------------------------------------------------
def k01_bad_request(root: Path) -> Seen:
    with sim_gateway(api_key=KEY) as server:  # n > 128: the server's limit (OpenAI's too)
        return optimize(root, gateway_config(root, server.openai_base_url, noisy_samples=200,
                                             max_samples_per_call=256))


def k02_wrong_key(root: Path) -> Seen:
    with sim_gateway(api_key="sk-the-gateway-wants-another-key") as server:
        return optimize(root, gateway_config(root, server.openai_base_url))


def k03_forbidden(root: Path) -> Seen:
    with stub_gateway(403, "Project does not have access to this model") as url:
        return optimize(root, gateway_config(root, url))


def k04_unknown_model(root: Path) -> Seen:
    with sim_gateway(api_key=KEY, models=["some-other-model"]) as server:
        return optimize(root, gateway_config(root, server.openai_base_url))


def k05_payload_too_large(root: Path) -> Seen:
    with stub_gateway(413, "Request entity too large") as url:
        return optimize(root, gateway_config(root, url))


def k06_server_error_forever(root: Path) -> Seen:
    with sim_gateway(api_key=KEY, rate_500=1.0) as server:
        return optimize(root, gateway_config(root, server.openai_base_url))


def k07_missing_key(root: Path) -> Seen:
    raw = small_run_config(root)
    raw["models"] = {"target": "openai/gpt-4o-mini", "judge": "openai/gpt-4o-mini", "embedding": "sim/embed"}
    return picaco("optimize", "--config", str(write_yaml(root / "run.yaml", raw)),
                  env={"OPENAI_API_KEY": None, KEY_ENV: KEY})


def k08_content_filtered(root: Path) -> Seen:
    with sim_gateway(api_key=KEY, rate_filtered=0.05, seed=3) as server:
        return optimize(root, gateway_config(root, server.openai_base_url))


def k09_gemini_bad_request(root: Path) -> Seen:
    with sim_gateway(api_key=KEY) as server:  # candidateCount > 8
        return optimize(root, gateway_config(root, server.gemini_base_url, kind="gemini", name="gg",
                                             noisy_samples=20, max_samples_per_call=32))


def k10_empty_choices(root: Path) -> Seen:
    empty = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m", "choices": [],
             "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}}
    with stub_gateway(200, "", reply=empty) as url:
        return optimize(root, gateway_config(root, url))


def k11_gemini_empty_candidates(root: Path) -> Seen:
    with stub_gateway(200, "", reply={"candidates": [], "usageMetadata": {"promptTokenCount": 5}}) as url:
        return optimize(root, gateway_config(root, url, kind="gemini", name="gg"))


CASES = [
    Case("K01", "calls", "the gateway answers 400 (n=200 > 128: max_samples_per_call set too high), echoing the key",
         NO_KEY + r"BadRequest \(gw, status 400.*'sim-target'.*'n' must be within", "no key anywhere; no run result",
         k01_bad_request, key_nowhere),
    Case("K02", "calls", "the gateway answers 401 (a wrong key), echoing the key",
         NO_KEY + r"AuthError \(gw, status 401.*'sim-(?:judge|target)'", "no key anywhere", k02_wrong_key, key_nowhere),
    Case("K03", "calls", "the gateway answers 403, echoing the key",
         NO_KEY + r"AuthError \(gw, status 403.*'sim-(?:judge|target)'.*does not have access", "no key anywhere",
         k03_forbidden, key_nowhere),
    Case("K04", "calls", "the gateway answers 404 (unknown model), echoing the key",
         NO_KEY + r"BadRequest \(gw, status 404.*'sim-(?:judge|target)'.*not found", "no key anywhere",
         k04_unknown_model, key_nowhere),
    Case("K05", "calls", "the gateway answers 413, echoing the key",
         NO_KEY + r"\(gw, status 413.*'sim-(?:judge|target)'.*too large", "no key anywhere", k05_payload_too_large, key_nowhere),
    Case("K06", "calls", "the gateway answers 500 to every request, echoing the key",
         NO_KEY + r"RetriesExhausted \(gw, status 500.*gave up after 2 attempts.*'sim-(?:judge|target)'", "no key anywhere",
         k06_server_error_forever, key_nowhere),
    Case("K07", "calls", "openai/... model with OPENAI_API_KEY unset and nothing cached",
         r"OPENAI_API_KEY is not set", "nothing half-written", k07_missing_key, nothing_half_written, expect_exit=2),
    Case("K08", "calls", "5% of the gateway's replies are content-filtered",
         r"Optimized meta-instruction", "a result whose filtered_replies counts the refused replies",
         k08_content_filtered, result_reports_filtered, expect_exit=0),
    Case("K09", "calls", "a Gemini-API gateway answers 400 (candidateCount 20 > 8: max_samples_per_call too high), "
                        "echoing the key",
         NO_KEY + r"BadRequest \(gg, status 400.*'sim-target'.*candidateCount", "no key anywhere",
         k09_gemini_bad_request, key_nowhere),
    Case("K10", "calls", "the server answers 200 with an empty choice list, every time",
         NO_KEY + r"RetriesExhausted \(gw, status 200.*gave up after 2 attempts.*'sim-(?:judge|target)': the reply has no 'choices'", "no key anywhere",
         k10_empty_choices, key_nowhere),
    Case("K11", "calls", "a Gemini-API server answers 200 with no candidates, every time",
         NO_KEY + r"RetriesExhausted \(gg, status 200.*gave up after 2 attempts.*'sim-(?:judge|target)': the reply has no 'candidates'", "no key anywhere",
         k11_gemini_empty_candidates, key_nowhere),
]


# -- measures --------------------------------------------------------------------------------------------------
def secret_found(work: Path) -> int:
    """Occurrences of the user's key in everything a user or a log collector could see, after runs whose
    gateway answers 401, 400 and 500 with the key echoed in the body: CLI output, logs (picaco's and the
    SDKs', at DEBUG), run files, calls.jsonl and every byte under the cache directory."""
    scenarios = {"401": ({"api_key": "sk-the-gateway-wants-another-key"}, {}),
                 "400": ({"api_key": KEY}, {"noisy_samples": 200, "max_samples_per_call": 256}),
                 "500": ({"api_key": KEY, "rate_500": 1.0}, {})}
    found = 0
    log_path = work / "debug.log"
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.DEBUG)
    try:
        for name, (server_fields, run_fields) in scenarios.items():
            root = work / name
            root.mkdir()
            with sim_gateway(**server_fields) as server:
                seen = optimize(root, gateway_config(root, server.openai_base_url, **run_fields))
            if seen.exit_code == 0:
                raise AssertionError(f"scenario {name}: the run succeeded, so no error reply was exercised")
            found += (seen.stdout + seen.stderr).count(KEY)
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(old_level)
        handler.close()
    for p in work.rglob("*"):
        if p.is_file():
            found += p.read_bytes().count(KEY.encode())
    return found


def content_filtered_run_completed(work: Path) -> bool:
    """A small run against the simulator server with 4% of its replies content-filtered: exit 0, and its
    result reports how many replies were refused (counted as missing)."""
    with sim_gateway(api_key=KEY, rate_filtered=0.04, seed=11) as server:
        seen = optimize(work, gateway_config(work, server.openai_base_url))
    result = work / "runs" / "r" / "result.json"
    if seen.exit_code != 0 or not result.exists():
        return False
    return int(json.loads(result.read_text()).get("filtered_replies") or 0) > 0


def cached_rerun_without_key_calls(work: Path) -> int | str:
    """Calls the simulator server saw when a finished run of `openai/...` models (served by it, a key
    required) is run again with OPENAI_API_KEY unset: every answer is in the cache, so none, and exit 0.
    A failed rerun is returned as its error line."""
    with sim_gateway(api_key=KEY) as server:
        raw = small_run_config(work)
        raw["models"] = {"target": "openai/sim-target", "judge": "openai/sim-judge", "embedding": "openai/sim-embed"}
        raw["client"]["providers"]["openai"] = {"kind": "openai", "base_url": server.openai_base_url,
                                                "api_key_env": "OPENAI_API_KEY", "require_key": True}
        config = write_yaml(work / "run.yaml", raw)
        first = picaco("optimize", "--config", str(config), env={"OPENAI_API_KEY": KEY})
        if first.exit_code != 0:
            return f"the first run failed: {' | '.join(first.error_lines)}"
        server.reset_log()
        # a new run name: nothing to resume from the run store, every step asks the cache
        again = picaco("optimize", "--config", str(config), "--run-name", "r2", env={"OPENAI_API_KEY": None})
        calls = len(server.request_log())
    if again.exit_code != 0:
        return f"exit {again.exit_code}: {' | '.join(again.error_lines)}"
    return calls


MEASURES = {"secret_found": secret_found, "content_filtered_run_completed": content_filtered_run_completed,
            "cached_rerun_without_key_calls": cached_rerun_without_key_calls}
