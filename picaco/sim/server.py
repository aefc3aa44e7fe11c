"""A loopback HTTP server that speaks the OpenAI and Gemini APIs, answered by the simulator engine.

It lets the real `openai` and `google-genai` clients (and picaco's providers around them) run end to end
with no network: replies are deterministic given the request and its seed, and the server can add
latency and inject the failures real providers produce (429 with Retry-After, 500, hangs, truncated and
malformed bodies, context-length errors, missing keys), so that retry, timeout and error-mapping code is
exercised against real wire traffic.

Endpoints
  OpenAI  POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models
  Gemini  POST /{v1,v1beta}/models/{model}:generateContent, :batchEmbedContents, :embedContent
  Sim     GET /_sim/health, GET /_sim/log, POST /_sim/reset

Latency is added before every answer except 401/429 rejections, which a real gateway returns before
any model work. Faults are drawn per API request from a seeded RNG, in arrival order. A request body
over `max_body_mb` (default 8 MiB) gets 413 before it is read; one that is not a JSON object, or nests
too deeply to parse, gets 400 (see request_body.py).

Run it with `python -m picaco.sim.server --port 8000 --latency-ms 100` (see `--help`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from picaco.sim.engine import SimEngine, count_tokens, stable_seed
from picaco.sim.request_body import MIB, BodyNotJSON, BodyTooLarge, parse_json_object, read_body

FAULTS: tuple[str, ...] = ("429", "500", "hang", "truncated", "malformed", "filtered")


class SimServerConfig(BaseModel):
    """Everything the simulator server can be told. The CLI flags mirror these fields one to one."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    world: str = "echo"
    seed: int = 0  # seeds the latency jitter and the fault draws
    latency_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform extra latency in [0, jitter_ms]
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    hang_s: float = 30.0
    hang_then: Literal["answer", "drop"] = "drop"
    rate_truncated: float = 0.0
    rate_malformed: float = 0.0
    rate_filtered: float = 0.0  # 200 with every choice content-filtered (Gemini: the prompt blocked)
    max_context_tokens: int | None = None
    max_choices: int | None = Field(None, ge=1)  # answer at most this many choices, as llama.cpp (1) does
    models: list[str] | None = None  # when set, other model names get a 404
    api_key: SecretStr | None = None  # when set, requests must carry this key (401 otherwise)
    # fault: every error body (4xx, 5xx) echoes the request's credentials, as a careless gateway does
    echo_auth_in_errors: bool = False
    log_path: Path | None = None  # append every request as one JSON line
    log_max_entries: int = 100_000  # in-memory log bound; the JSONL file keeps everything
    embed_dim: int = 256
    http: Literal["auto", "h11", "httptools"] = "auto"
    max_body_mb: float = 8.0  # larger request bodies get 413 before they are read (MiB)

    @field_validator("rate_429", "rate_500", "rate_hang", "rate_truncated", "rate_malformed", "rate_filtered")
    @classmethod
    def _rate(cls, v: float, info) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{info.field_name} must be within [0, 1], got {v}")
        return float(v)

    @field_validator("latency_ms", "jitter_ms", "retry_after_s", "hang_s")
    @classmethod
    def _non_negative(cls, v: float, info) -> float:
        if v < 0:
            raise ValueError(f"{info.field_name} must be >= 0, got {v}")
        return float(v)

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 0 <= v <= 65535:
            raise ValueError(f"port must be within [0, 65535], got {v}")
        return v

    @field_validator("max_context_tokens", "log_max_entries", "embed_dim")
    @classmethod
    def _positive(cls, v: int | None, info) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"{info.field_name} must be >= 1, got {v}")
        return v

    @field_validator("max_body_mb")
    @classmethod
    def _body_limit(cls, v: float) -> float:
        if not v > 0:
            raise ValueError(f"max_body_mb must be > 0, got {v}")
        return float(v)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MIB)

    @model_validator(mode="after")
    def _rates_sum(self) -> "SimServerConfig":
        total = sum(self.fault_rates().values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {total:g}, more than 1")
        return self

    def fault_rates(self) -> dict[str, float]:
        return {"429": self.rate_429, "500": self.rate_500, "hang": self.rate_hang,
                "truncated": self.rate_truncated, "malformed": self.rate_malformed,
                "filtered": self.rate_filtered}


def _resolve_engine(config: SimServerConfig) -> SimEngine:
    from picaco.sim import engine as engine_mod

    make_world = getattr(engine_mod, "make_world", None)
    if make_world is not None:
        return SimEngine(make_world(config.world), embed_dim=config.embed_dim)
    if config.world != "echo":
        from picaco.llm.errors import ConfigError

        raise ConfigError(f"sim world {config.world!r} is unknown: this build only has the 'echo' world")
    return SimEngine(embed_dim=config.embed_dim)


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


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


def _install_drop_filter() -> None:
    # an injected drop is intended; keep uvicorn from printing a traceback for it
    logger = logging.getLogger("uvicorn.error")
    if _DROP_FILTER not in logger.filters:
        logger.addFilter(_DROP_FILTER)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _text_of(content: Any, where: str) -> str:
    """OpenAI content is a string or a list of parts; only text parts are understood here."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                out.append(part["text"])
            else:
                raise _BadRequest(f"{where}: only text content parts are supported", where)
        return "".join(out)
    raise _BadRequest(f"{where}: content must be a string or a list of text parts", where)


def _apply_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class SimApp:
    """The ASGI app plus the state behind it (engine, RNGs, request log)."""

    def __init__(self, config: SimServerConfig) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.config = config
        self.engine = _resolve_engine(config)
        self._latency_rng = random.Random(stable_seed(config.seed, "latency"))
        self._fault_rng = random.Random(stable_seed(config.seed, "faults"))
        self._counter = 0
        self._lock = threading.Lock()  # the log is read from other threads (start_server_thread)
        self._log: deque[dict] = deque(maxlen=config.log_max_entries)
        self._log_file = None
        if config.log_path is not None:
            from picaco.io import check_output_path
            from picaco.llm.errors import ConfigError

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
        if api == "openai":
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        else:
            given = request.headers.get("x-goog-api-key") or request.query_params.get("key")
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

        errors = _OpenAIErrors if api == "openai" else _GeminiErrors
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
        except (_BadRequest, BodyNotJSON) as exc:
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
            body = _dumps({"object": "sim.malformed", "detail": "this is not an API response", "id": request_id})
            return done(self._respond(200, body, request_id), 200, fault)
        payload = answer(request_id)
        if fault == "filtered":
            payload = _filtered(api, payload)
        body = _dumps(payload)
        if fault == "truncated":
            body = body[: max(1, len(body) // 2)]
        return done(self._respond(200, body, request_id), 200, fault or hung)

    # ---- OpenAI ------------------------------------------------------------------------------------

    async def _openai_chat(self, request):
        return await self._serve(request, "openai", "chat", None, self._openai_chat_handler)

    def _openai_chat_handler(self, p: dict):
        model = p.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("'model' is required", "model")
        raw_messages = p.get("messages")
        if not isinstance(raw_messages, list) or not raw_messages:
            raise _BadRequest("'messages' must be a non-empty list", "messages")
        messages = []
        for i, m in enumerate(raw_messages):
            if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
                raise _BadRequest(f"messages[{i}].role must be one of system, developer, user, assistant",
                                  f"messages[{i}].role")
            role = "system" if m["role"] == "developer" else m["role"]
            messages.append({"role": role, "content": _text_of(m.get("content"), f"messages[{i}].content")})
        n = min(_int_param(p, "n", 1, 1, 128), self.config.max_choices or 128)
        seed = _int_param(p, "seed", None, None, None)
        temperature = _float_param(p, "temperature", 1.0, 0.0, 2.0)
        _float_param(p, "top_p", None, 0.0, 1.0)  # accepted and validated; the engine has no nucleus
        max_tokens = _int_param(p, "max_completion_tokens", None, 1, None)
        if max_tokens is None:
            max_tokens = _int_param(p, "max_tokens", None, 1, None)
        stop = _stop_param(p.get("stop"), "stop", 4)
        prompt_tokens = sum(count_tokens(m["content"]) + 4 for m in messages)

        def answer(request_id: str) -> dict:
            reply = self.engine.chat(model, messages, n=n, seed=seed, temperature=temperature,
                                     max_tokens=max_tokens)
            choices, completion_tokens = [], 0
            for k, (text, reason) in enumerate(zip(reply.texts, reply.finish_reasons)):
                text, stopped = _apply_stop(text, stop)
                reason = "stop" if stopped else reason
                completion_tokens += count_tokens(text)
                choices.append({"index": k, "message": {"role": "assistant", "content": text, "refusal": None},
                                "logprobs": None, "finish_reason": reason})
            return {"id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": int(time.time()),
                    "model": model, "choices": choices, "system_fingerprint": "fp_picaco_sim",
                    "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": reply.prompt_tokens + completion_tokens}}

        return model, n, prompt_tokens, answer

    async def _openai_embeddings(self, request):
        return await self._serve(request, "openai", "embed", None, self._openai_embed_handler)

    def _openai_embed_handler(self, p: dict):
        model = p.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("'model' is required", "model")
        inp = p.get("input")
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise _BadRequest("'input' must be a string or a non-empty list of strings", "input")
        if any(t == "" for t in texts):
            raise _BadRequest("'input' cannot contain empty strings", "input")
        fmt = p.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise _BadRequest("'encoding_format' must be 'float' or 'base64'", "encoding_format")

        def answer(request_id: str) -> dict:
            vectors = self.engine.embed(model, texts)
            tokens = sum(count_tokens(t) for t in texts)
            data = []
            for i, v in enumerate(vectors):
                emb = (base64.b64encode(v.astype("<f4").tobytes()).decode() if fmt == "base64"
                       else [float(x) for x in v.tolist()])
                data.append({"object": "embedding", "index": i, "embedding": emb})
            return {"object": "list", "data": data, "model": model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

        return model, len(texts), None, answer

    async def _openai_models(self, request):
        names = self.config.models or ["sim"]
        body = _dumps({"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                   "owned_by": "picaco-sim"} for m in names]})
        return self._respond(200, body, self._next_id())

    # ---- Gemini ------------------------------------------------------------------------------------

    async def _gemini(self, request):
        target = request.path_params["target"]
        model, sep, method = target.rpartition(":")
        if not sep or method not in ("generateContent", "batchEmbedContents", "embedContent"):
            from starlette.responses import Response

            return Response(_dumps({"error": {"code": 404, "message": f"unknown method {target!r}",
                                              "status": "NOT_FOUND"}}), 404, media_type="application/json")
        if method == "generateContent":
            return await self._serve(request, "gemini", "chat", model, lambda p: self._gemini_chat(model, p))
        return await self._serve(request, "gemini", "embed", model,
                                 lambda p: self._gemini_embed(model, method, p))

    def _gemini_chat(self, model: str, p: dict):
        messages = []
        system = p.get("systemInstruction")
        if system is not None:
            messages.append({"role": "system", "content": _gemini_text(system, "systemInstruction")})
        contents = p.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _BadRequest("contents must be a non-empty list", "contents")
        for i, c in enumerate(contents):
            if not isinstance(c, dict):
                raise _BadRequest(f"contents[{i}] must be an object", f"contents[{i}]")
            role = c.get("role", "user")
            if role not in ("user", "model"):
                raise _BadRequest(f"contents[{i}].role must be 'user' or 'model', got {role!r}", f"contents[{i}].role")
            messages.append({"role": "user" if role == "user" else "assistant",
                             "content": _gemini_text(c, f"contents[{i}]")})
        g = p.get("generationConfig") or {}
        if not isinstance(g, dict):
            raise _BadRequest("generationConfig must be an object", "generationConfig")
        n = min(_int_param(g, "candidateCount", 1, 1, 8), self.config.max_choices or 8)
        seed = _int_param(g, "seed", None, None, None)
        temperature = _float_param(g, "temperature", 1.0, 0.0, 2.0)
        _float_param(g, "topP", None, 0.0, 1.0)
        max_tokens = _int_param(g, "maxOutputTokens", None, 1, None)
        stop = _stop_param(g.get("stopSequences"), "generationConfig.stopSequences", 5)
        prompt_tokens = sum(count_tokens(m["content"]) + 4 for m in messages)

        def answer(request_id: str) -> dict:
            reply = self.engine.chat(model, messages, n=n, seed=seed, temperature=temperature,
                                     max_tokens=max_tokens)
            candidates, completion_tokens = [], 0
            for k, (text, reason) in enumerate(zip(reply.texts, reply.finish_reasons)):
                text, stopped = _apply_stop(text, stop)
                finish = "STOP" if stopped or reason == "stop" else "MAX_TOKENS"
                completion_tokens += count_tokens(text)
                candidates.append({"content": {"parts": [{"text": text}], "role": "model"},
                                   "finishReason": finish, "index": k})
            return {"candidates": candidates,
                    "usageMetadata": {"promptTokenCount": reply.prompt_tokens,
                                      "candidatesTokenCount": completion_tokens,
                                      "totalTokenCount": reply.prompt_tokens + completion_tokens},
                    "modelVersion": model, "responseId": request_id}

        return model, n, prompt_tokens, answer

    def _gemini_embed(self, model: str, method: str, p: dict):
        if method == "embedContent":
            texts = [_gemini_text(p.get("content"), "content")]
        else:
            reqs = p.get("requests")
            if not isinstance(reqs, list) or not reqs:
                raise _BadRequest("requests must be a non-empty list", "requests")
            texts = [_gemini_text(r.get("content") if isinstance(r, dict) else None, f"requests[{i}].content")
                     for i, r in enumerate(reqs)]

        def answer(request_id: str) -> dict:
            vectors = self.engine.embed(model, texts)
            embs = [{"values": [float(x) for x in v.tolist()]} for v in vectors]
            return {"embedding": embs[0]} if method == "embedContent" else {"embeddings": embs}

        return model, len(texts), None, answer

    # ---- sim endpoints -----------------------------------------------------------------------------

    async def _health(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"ok": True, "world": self.config.world, "pid": os.getpid()})

    async def _get_log(self, request):
        from starlette.responses import Response

        return Response(_dumps(self.request_log()), media_type="application/json")

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
                body = _dumps(payload)
            except (ValueError, KeyError, TypeError):
                body += f" (request had {echo})".encode()
            await send(dict(start, headers=[(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                            + [(b"content-length", str(len(body)).encode())]))
            await send(dict(message, body=body))
            return
        await send(message)

    return wrapped


def _filtered(api: str, payload: dict) -> dict:
    """What a safety filter's refusal looks like on the wire, for a chat or an embeddings answer."""
    if "choices" in payload:
        for c in payload["choices"]:
            c["message"]["content"] = None
            c["finish_reason"] = "content_filter"
        payload["usage"]["completion_tokens"] = 0
        payload["usage"]["total_tokens"] = payload["usage"]["prompt_tokens"]
        return payload
    if "candidates" in payload:
        usage = payload["usageMetadata"]
        return {"promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": usage["promptTokenCount"],
                                  "totalTokenCount": usage["promptTokenCount"]},
                "modelVersion": payload["modelVersion"], "responseId": payload["responseId"]}
    raise AssertionError("only chat answers are filtered")


def _gemini_text(content: Any, where: str) -> str:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        raise _BadRequest(f"{where} must be an object with a 'parts' list", where)
    out = []
    for j, part in enumerate(content["parts"]):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise _BadRequest(f"{where}.parts[{j}] must be a text part", f"{where}.parts[{j}]")
        out.append(part["text"])
    return "".join(out)


def _int_param(p: dict, name: str, default, lo, hi):
    v = p.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise _BadRequest(f"'{name}' must be an integer, got {v!r}", name)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _BadRequest(f"'{name}' must be within [{lo}, {hi}], got {v}", name)
    return v


def _float_param(p: dict, name: str, default, lo, hi):
    v = p.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _BadRequest(f"'{name}' must be a number, got {v!r}", name)
    if not lo <= v <= hi:
        raise _BadRequest(f"'{name}' must be within [{lo}, {hi}], got {v}", name)
    return float(v)


def _stop_param(v: Any, name: str, most: int) -> list[str]:
    if v is None:
        return []
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops) or len(stops) > most:
        raise _BadRequest(f"'{name}' must be a string or a list of at most {most} strings", name)
    return stops


class _OpenAIErrors:
    """Error bodies in the shape api.openai.com sends them."""

    @staticmethod
    def _body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
        return _dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})

    @classmethod
    def auth(cls, problem: str):
        msg = ("You didn't provide an API key. You need to provide your API key in an Authorization header "
               "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)." if problem == "missing"
               else "Incorrect API key provided.")
        return 401, cls._body(msg, "invalid_request_error", None if problem == "missing" else "invalid_api_key")

    @classmethod
    def bad_request(cls, message: str, param: str | None):
        return 400, cls._body(message, "invalid_request_error", None, param)

    @classmethod
    def too_large(cls, message: str):
        return 413, cls._body(message, "invalid_request_error", "request_too_large")

    @classmethod
    def not_found(cls, model: str, kind: str):
        return 404, cls._body(f"The model `{model}` does not exist or you do not have access to it.",
                              "invalid_request_error", "model_not_found")

    @classmethod
    def rate_limited(cls, retry_after: float):
        return 429, cls._body(f"Rate limit reached (simulated). Please try again in {retry_after:g}s.",
                              "requests", "rate_limit_exceeded")

    @classmethod
    def server_error(cls):
        return 500, cls._body("The server had an error while processing your request (simulated).",
                              "server_error", None)

    @classmethod
    def context_too_long(cls, tokens: int, limit: int):
        return 400, cls._body(f"This model's maximum context length is {limit} tokens. However, your messages "
                              f"resulted in {tokens} tokens. Please reduce the length of the messages.",
                              "invalid_request_error", "context_length_exceeded", "messages")


class _GeminiErrors:
    """Error bodies in the shape generativelanguage.googleapis.com sends them (google.rpc.Status)."""

    @staticmethod
    def _body(code: int, message: str, status: str, details: list | None = None) -> bytes:
        err: dict = {"code": code, "message": message, "status": status}
        if details:
            err["details"] = details
        return _dumps({"error": err})

    @classmethod
    def auth(cls, problem: str):
        # The real API answers a wrong key with 400 API_KEY_INVALID and a missing one with 403.
        if problem == "missing":
            return 403, cls._body(403, "Method doesn't allow unregistered callers (callers without established "
                                  "identity). Please use API Key or other form of API consumer identity to call "
                                  "this API.", "PERMISSION_DENIED")
        return 400, cls._body(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT",
                              [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                                "domain": "googleapis.com"}])

    @classmethod
    def bad_request(cls, message: str, param: str | None):
        return 400, cls._body(400, message, "INVALID_ARGUMENT")

    @classmethod
    def too_large(cls, message: str):
        return 413, cls._body(413, message, "INVALID_ARGUMENT")

    @classmethod
    def not_found(cls, model: str, kind: str):
        method = "generateContent" if kind == "chat" else "embedContent"
        return 404, cls._body(404, f"models/{model} is not found for API version v1beta, or is not supported "
                              f"for {method}.", "NOT_FOUND")

    @classmethod
    def rate_limited(cls, retry_after: float):
        return 429, cls._body(429, "Resource has been exhausted (e.g. check quota). (simulated)",
                              "RESOURCE_EXHAUSTED",
                              [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": f"{retry_after:g}s"}])

    @classmethod
    def server_error(cls):
        return 500, cls._body(500, "An internal error has occurred (simulated).", "INTERNAL")

    @classmethod
    def context_too_long(cls, tokens: int, limit: int):
        return 400, cls._body(400, f"The input token count ({tokens}) exceeds the maximum number of tokens "
                              f"allowed ({limit}).", "INVALID_ARGUMENT")


# ---- running it -------------------------------------------------------------------------------------


def _http_impl(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _uvicorn_config(app: SimApp, config: SimServerConfig):
    import uvicorn

    return uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                          http=_http_impl(config.http), lifespan="off", timeout_graceful_shutdown=2,
                          backlog=2048)


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and without
    # it the body write waits for the ACK of the header write (a 40 ms delayed-ACK stall per reply)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class RunningServer(ABC):
    """A started simulator server; use as a context manager or call `stop()`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.openai_base_url = url + "/v1"
        self.gemini_base_url = url  # google-genai appends /{version}/models/...

    def request_log(self) -> list[dict]:
        import httpx

        r = httpx.get(self.url + "/_sim/log", timeout=10)
        r.raise_for_status()
        return r.json()

    def reset_log(self) -> None:
        import httpx

        httpx.post(self.url + "/_sim/reset", timeout=10).raise_for_status()

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and release the port."""

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ThreadServer(RunningServer):
    def __init__(self, config: SimServerConfig, start_timeout_s: float = 10.0) -> None:
        import uvicorn

        _install_drop_filter()
        self.app = SimApp(config)
        self._sock = _bind(config.host, config.port)
        port = self._sock.getsockname()[1]
        super().__init__(_url(config.host, port))
        self._server = uvicorn.Server(_uvicorn_config(self.app, config))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"picaco-sim-server-{port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sim server on {self.url} did not start: {self._error!r}")
            time.sleep(0.005)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # surfaced by the constructor or stop()
            self._error = exc

    def request_log(self) -> list[dict]:
        return self.app.request_log()

    def reset_log(self) -> None:
        self.app.reset_log()

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # don't wait for hung requests
        self._thread.join(timeout=10)
        self._sock.close()
        self.app.close()
        if self._thread.is_alive():
            raise RuntimeError(f"sim server thread on {self.url} did not stop within 10s")


class ProcessServer(RunningServer):
    def __init__(self, config: SimServerConfig, start_timeout_s: float = 30.0) -> None:
        env = dict(os.environ)
        argv = [sys.executable, "-m", "picaco.sim.server", *config_to_argv(config)]
        if config.api_key is not None:
            # through the environment, never argv, so the key does not show in `ps`
            env["PICACO_SIM_API_KEY"] = config.api_key.get_secret_value()
            argv += ["--api-key-env", "PICACO_SIM_API_KEY"]
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        try:
            url = self._read_url(start_timeout_s)
        except BaseException:
            self._kill()
            raise
        super().__init__(url)
        self._wait_healthy(start_timeout_s)

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def _read_url(self, timeout: float) -> str:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"sim server process did not start (exit code {self.proc.poll()}): "
                                   f"{self._stderr_tail()}")
            if sel.select(timeout=min(left, 0.1)):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                buf += chunk
        sel.close()
        line = buf.split(b"\n", 1)[0].decode().strip()
        prefix = "picaco sim server listening on "
        if not line.startswith(prefix):
            raise RuntimeError(f"sim server process printed an unexpected first line: {line!r}")
        return line[len(prefix):]

    def _wait_healthy(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/_sim/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise RuntimeError(f"sim server process at {self.url} never became healthy: {self._stderr_tail()}")
            time.sleep(0.05)

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        self._kill()
        self._stderr.close()
        try:
            os.kill(self.proc.pid, 0)
        except ProcessLookupError:
            return
        raise RuntimeError(f"sim server process {self.proc.pid} is still alive after stop()")


def start_server_thread(config: SimServerConfig | None = None) -> RunningServer:
    """Serve in a background thread of this process; `.request_log()` reads the log directly."""
    return ThreadServer(config or SimServerConfig())


def start_server_process(config: SimServerConfig | None = None) -> RunningServer:
    """Serve from a separate `python -m picaco.sim.server` process (its own GIL, as in benchmarks)."""
    return ProcessServer(config or SimServerConfig())


# ---- CLI ----------------------------------------------------------------------------------------------

# config field -> (flag, argparse kwargs); api_key is replaced by --api-key-env (secrets only from env)
_FLAGS: dict[str, tuple[str, dict]] = {
    "host": ("--host", {"help": "interface to bind (default 127.0.0.1)"}),
    "port": ("--port", {"type": int, "help": "port (0: a free one; the URL is printed on stdout)"}),
    "world": ("--world", {"help": "the engine's world (default echo)"}),
    "seed": ("--seed", {"type": int, "help": "seed of latency jitter and fault draws"}),
    "latency_ms": ("--latency-ms", {"type": float, "help": "fixed latency added to every answer"}),
    "jitter_ms": ("--jitter-ms", {"type": float, "help": "extra uniform latency in [0, J] ms"}),
    "rate_429": ("--rate-429", {"type": float, "help": "share of requests answered 429"}),
    "retry_after_s": ("--retry-after-s", {"type": float, "help": "Retry-After sent with 429s (may be fractional)"}),
    "rate_500": ("--rate-500", {"type": float, "help": "share of requests answered 500"}),
    "rate_hang": ("--rate-hang", {"type": float, "help": "share of requests that hang"}),
    "hang_s": ("--hang-s", {"type": float, "help": "how long a hang lasts"}),
    "hang_then": ("--hang-then", {"choices": ["answer", "drop"], "help": "after a hang: answer or drop"}),
    "rate_truncated": ("--rate-truncated", {"type": float, "help": "share of 200s with a body cut mid-way"}),
    "rate_malformed": ("--rate-malformed", {"type": float, "help": "share of 200s with non-API JSON"}),
    "rate_filtered": ("--rate-filtered", {"type": float, "help": "share of 200s refused by a content filter"}),
    "max_context_tokens": ("--max-context-tokens", {"type": int, "help": "prompts longer than this get a 400"}),
    "max_choices": ("--max-choices", {"type": int, "help": "answer at most this many choices per request, "
                                                           "whatever n asks (llama.cpp, Ollama: 1)"}),
    "models": ("--models", {"nargs": "+", "help": "known model names (others get 404); default: any"}),
    "log_path": ("--log-path", {"type": Path, "help": "append every request to this JSONL file"}),
    "log_max_entries": ("--log-max-entries", {"type": int, "help": "bound of the in-memory request log"}),
    "embed_dim": ("--embed-dim", {"type": int, "help": "embedding dimension"}),
    "http": ("--http", {"choices": ["auto", "h11", "httptools"], "help": "uvicorn HTTP implementation"}),
    "max_body_mb": ("--max-body-mb", {"type": float, "help": "largest request body in MiB (default 8); "
                                                             "larger ones get 413 before they are read"}),
    "echo_auth_in_errors": ("--echo-auth-in-errors", {"action": "store_true",
                                                      "help": "error bodies echo the request's credentials"}),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # argparse would print its whole usage block first; the user needs the one line that names the flag
        from picaco.llm.errors import ConfigError

        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="picaco sim-server", description=__doc__.split("\n")[0])
    for field, (flag, kwargs) in _FLAGS.items():
        parser.add_argument(flag, dest=field, default=None, **kwargs)
    parser.add_argument("--api-key-env", default=None,
                        help="require the key held by this environment variable (401/403 otherwise)")
    return parser


def config_from_args(argv: list[str] | None = None) -> SimServerConfig:
    from picaco.llm.errors import ConfigError

    args = build_parser().parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None and k != "api_key_env"}
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise ConfigError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
        values["api_key"] = key
    return SimServerConfig(**values)


def config_to_argv(config: SimServerConfig) -> list[str]:
    """Flags reproducing `config` (without the API key, which travels through the environment)."""
    argv: list[str] = []
    defaults = SimServerConfig()
    for field, (flag, _) in _FLAGS.items():
        value = getattr(config, field)
        if value == getattr(defaults, field) or value is None:
            continue
        if value is True:  # a switch
            argv.append(flag)
            continue
        argv += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    return argv


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from pydantic import ValidationError

    from picaco.llm.errors import ConfigError

    try:
        config = config_from_args(argv)
        try:
            sock = _bind(config.host, config.port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
        try:
            app = SimApp(config)
        except BaseException:
            sock.close()
            raise
    except SystemExit as exc:  # --help printed the flags
        return exc.code if isinstance(exc.code, int) else 0
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        flag = _FLAGS[field][0] if field in _FLAGS else field
        msg = err["msg"].removeprefix("Value error, ")
        print(f"error: {flag}: {msg}" if flag else f"error: {msg}", file=sys.stderr)  # no flag: a check of several
        return 2
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _install_drop_filter()
    url = _url(config.host, sock.getsockname()[1])
    print(f"picaco sim server listening on {url}", flush=True)
    try:
        uvicorn.Server(_uvicorn_config(app, config)).run(sockets=[sock])
    finally:
        app.close()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
