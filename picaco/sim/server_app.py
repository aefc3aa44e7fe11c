"""The simulator server's ASGI app: routing, the request log, auth, latency and fault injection.

What a request body means and what the answers and error bodies look like is the wire modules' business
(picaco.sim.wire_openai, picaco.sim.wire_gemini); this module decides, per API request, whether the
answer is replaced by a fault, delayed, or refused, and logs it. Faults are drawn per API request from a
seeded RNG, in arrival order. Latency is added before every answer except 401/429 rejections, which a
real gateway returns before any model work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import threading
import time
from collections import deque

from picaco.base.errors import ConfigError
from picaco.io import check_output_path
from picaco.sim import wire_gemini, wire_openai
from picaco.sim.engine import SimEngine, stable_seed
from picaco.sim.request_body import BodyNotJSON, BodyTooLarge, parse_json_object, read_body
from picaco.sim.server_config import FAULTS, SimServerConfig
from picaco.sim.wire import BadRequest, dumps
from picaco.sim.worlds import make_world

WIRES = {wire_openai.API: wire_openai, wire_gemini.API: wire_gemini}


class _DropConnection(Exception):
    """Raised after the response headers went out, so that uvicorn closes the socket mid-reply."""


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:  # starlette may wrap it
            if isinstance(exc, _DropConnection):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


_DROP_FILTER = _DropFilter()


def install_drop_filter() -> None:
    # an injected drop is intended; keep uvicorn from printing a traceback for it
    logger = logging.getLogger("uvicorn.error")
    if _DROP_FILTER not in logger.filters:
        logger.addFilter(_DROP_FILTER)


class SimApp:
    """The ASGI app plus the state behind it (engine, RNGs, request log)."""

    def __init__(self, config: SimServerConfig) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.config = config
        self.engine = SimEngine(make_world(config.world), embed_dim=config.embed_dim)
        self._latency_rng = random.Random(stable_seed(config.seed, "latency"))
        self._fault_rng = random.Random(stable_seed(config.seed, "faults"))
        self._counter = 0
        self._lock = threading.Lock()  # the log is read from other threads (start_server_thread)
        self._log: deque[dict] = deque(maxlen=config.log_max_entries)
        self._log_file = None
        if config.log_path is not None:
            check_output_path(config.log_path, "--log-path", folder=False)
            try:
                config.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log_file = open(config.log_path, "a", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"--log-path {config.log_path}: cannot open it ({exc.strerror or exc})") from None
        self._key = config.api_key.get_secret_value() if config.api_key is not None else None
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._openai_chat, methods=["POST"]),
            Route("/v1/embeddings", self._openai_embeddings, methods=["POST"]),
            Route("/v1/models", self._openai_models, methods=["GET"]),
            Route("/{version}/models/{target:path}", self._gemini, methods=["POST"]),
            Route("/_sim/health", self._health, methods=["GET"]),
            Route("/_sim/log", self._get_log, methods=["GET"]),
            Route("/_sim/reset", self._reset, methods=["POST"]),
        ])

    async def __call__(self, scope, receive, send) -> None:
        if self.config.echo_auth_in_errors and scope["type"] == "http":
            send = _echoing_credentials(scope, send)
        await self.app(scope, receive, send)

    # ---- request log -------------------------------------------------------------------------------

    def request_log(self) -> list[dict]:
        with self._lock:
            return list(self._log)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._log.append(entry)
            if self._log_file is not None:
                self._log_file.write(json.dumps(entry) + "\n")
                self._log_file.flush()

    # ---- shared plumbing ---------------------------------------------------------------------------

    def _next_id(self) -> str:
        self._counter += 1
        return f"req_sim_{self.config.seed}_{self._counter:09d}"

    def _draw_fault(self) -> str | None:
        rates = self.config.fault_rates()
        if not any(rates.values()):
            return None
        u = self._fault_rng.random()
        acc = 0.0
        for name in FAULTS:
            acc += rates[name]
            if u < acc:
                return name
        return None

    async def _sleep_latency(self) -> None:
        delay = self.config.latency_ms
        if self.config.jitter_ms:
            delay += self._latency_rng.uniform(0.0, self.config.jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)

    async def _hang(self, request) -> bool:
        """Sleep `hang_s` or until the client gives up; True when the client is still there."""
        sleep = asyncio.ensure_future(asyncio.sleep(self.config.hang_s))
        gone = asyncio.ensure_future(self._wait_disconnect(request))
        done, pending = await asyncio.wait({sleep, gone}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return sleep in done and gone not in done

    @staticmethod
    async def _wait_disconnect(request) -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    def _respond(self, status: int, body: bytes, request_id: str, headers: dict[str, str] | None = None):
        from starlette.responses import Response

        all_headers = {"x-request-id": request_id}
        if headers:
            all_headers.update(headers)
        return Response(body, status_code=status, headers=all_headers, media_type="application/json")

    def _check_key(self, request, api: str) -> str | None:
        """None when the key is fine, else the kind of failure ('missing' or 'wrong')."""
        if self._key is None:
            return None
        given = WIRES[api].credential(request)
        if not given:
            return "missing"
        return None if secrets.compare_digest(given.encode(), self._key.encode()) else "wrong"

    async def _serve(self, request, api: str, kind: str, model_hint: str | None, handler):
        """Auth, parse, fault, latency, answer and log, for one API request.

        `handler(body) -> (model, n, prompt_tokens_or_None, answer)` validates the body; `answer()`
        returns the success payload and is only called when no fault replaces it.
        """
        t0 = time.perf_counter()
        started = time.time()
        request_id = self._next_id()
        entry = {"time": round(started, 6), "path": request.url.path, "api": api, "kind": kind,
                 "model": model_hint, "n": None, "status": None, "fault": None, "latency_ms": None,
                 "request_id": request_id}

        def done(response, status: int | None, fault: str | None = None):
            entry["status"] = status
            entry["fault"] = fault
            entry["latency_ms"] = round((time.perf_counter() - t0) * 1000.0, 3)
            self._record(entry)
            return response

        wire = WIRES[api]
        errors = wire.Errors
        key_problem = self._check_key(request, api)
        if key_problem is not None:
            status, body = errors.auth(key_problem)
            return done(self._respond(status, body, request_id), status, "auth")

        from starlette.requests import ClientDisconnect

        try:
            payload = parse_json_object(await read_body(request, self.config.max_body_bytes))
            model, n, prompt_tokens, answer = handler(payload)
        except ClientDisconnect:
            return done(_Silent(), 499, None)
        except BodyTooLarge as exc:
            # close the connection rather than read (and throw away) the rest of the body
            status, body = errors.too_large(str(exc))
            return done(self._respond(status, body, request_id, {"connection": "close"}), status, None)
        except (BadRequest, BodyNotJSON) as exc:
            await self._sleep_latency()
            status, body = errors.bad_request(str(exc), getattr(exc, "param", None))
            return done(self._respond(status, body, request_id), status, None)
        entry["model"] = model
        entry["n"] = n

        if self.config.models is not None and model not in self.config.models:
            await self._sleep_latency()
            status, body = errors.not_found(model, kind)
            return done(self._respond(status, body, request_id), status, None)

        fault = self._draw_fault()
        if fault == "filtered" and kind != "chat":
            fault = None  # embeddings are never refused
        if fault == "429":
            status, body = errors.rate_limited(self.config.retry_after_s)
            ra = self.config.retry_after_s
            headers = {"retry-after": f"{ra:g}", "retry-after-ms": f"{ra * 1000:g}"}
            return done(self._respond(status, body, request_id, headers), status, fault)
        if fault == "hang":
            still_there = await self._hang(request)
            if not still_there:
                return done(_Silent(), 499, fault)  # nginx's "client closed request"
            if self.config.hang_then == "drop":
                return done(_Dropped(request_id), None, fault)
            fault = None  # the answer after the hang is a normal one, just late
            hung = "hang"
        else:
            hung = None
            await self._sleep_latency()
        if fault == "500":
            status, body = errors.server_error()
            return done(self._respond(status, body, request_id), status, fault)

        if (self.config.max_context_tokens is not None and prompt_tokens is not None
                and prompt_tokens > self.config.max_context_tokens):
            status, body = errors.context_too_long(prompt_tokens, self.config.max_context_tokens)
            return done(self._respond(status, body, request_id), status, "context")

        if fault == "malformed":
            body = dumps({"object": "sim.malformed", "detail": "this is not an API response", "id": request_id})
            return done(self._respond(200, body, request_id), 200, fault)
        payload = answer(request_id)
        if fault == "filtered":
            payload = wire.filtered(payload)
        body = dumps(payload)
        if fault == "truncated":
            body = body[: max(1, len(body) // 2)]
        return done(self._respond(200, body, request_id), 200, fault or hung)

    # ---- routes ------------------------------------------------------------------------------------

    async def _openai_chat(self, request):
        return await self._serve(request, wire_openai.API, "chat", None,
                                 lambda p: wire_openai.chat(self.engine, p, self.config.max_choices))

    async def _openai_embeddings(self, request):
        return await self._serve(request, wire_openai.API, "embed", None,
                                 lambda p: wire_openai.embeddings(self.engine, p))

    async def _openai_models(self, request):
        return self._respond(200, wire_openai.models_body(self.config.models or ["sim"]), self._next_id())

    async def _gemini(self, request):
        from starlette.responses import Response

        target = request.path_params["target"]
        split = wire_gemini.split_target(target)
        if split is None:
            return Response(wire_gemini.unknown_method_body(target), 404, media_type="application/json")
        model, method = split
        if method == "generateContent":
            return await self._serve(request, wire_gemini.API, "chat", model,
                                     lambda p: wire_gemini.chat(self.engine, model, p, self.config.max_choices))
        return await self._serve(request, wire_gemini.API, "embed", model,
                                 lambda p: wire_gemini.embeddings(self.engine, model, method, p))

    async def _health(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"ok": True, "world": self.config.world, "pid": os.getpid()})

    async def _get_log(self, request):
        from starlette.responses import Response

        return Response(dumps(self.request_log()), media_type="application/json")

    async def _reset(self, request):
        from starlette.responses import JSONResponse

        self.reset_log()
        return JSONResponse({"ok": True})


class _Silent:
    """A response for a client that already left: send nothing."""

    async def __call__(self, scope, receive, send) -> None:
        return None


class _Dropped:
    """Send the status line and headers, then close the socket without a body."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000"),
                                (b"x-request-id", self.request_id.encode())]})
        raise _DropConnection("injected drop")


def _echoing_credentials(scope, send):
    """`send` with every error reply's message extended by the request's credential headers."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    echo = "; ".join(f"{name}: {headers[name]}" for name in ("authorization", "x-goog-api-key") if name in headers)
    query = scope.get("query_string", b"").decode("latin-1")
    echo = (echo + (f"; query: {query}" if query else "")) or "no credentials"
    held: list[dict] = []

    async def wrapped(message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held.append(message)
            return
        if message["type"] == "http.response.body" and held:
            start = held.pop()
            body = message.get("body", b"")
            try:
                payload = json.loads(body)
                payload["error"]["message"] += f" (request had {echo})"
                body = dumps(payload)
            except (ValueError, KeyError, TypeError):
                body += f" (request had {echo})".encode()
            await send(dict(start, headers=[(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                            + [(b"content-length", str(len(body)).encode())]))
            await send(dict(message, body=body))
            return
        await send(message)

    return wrapped
