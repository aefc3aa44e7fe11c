"""The OpenAI wire format of the simulator server: /v1/chat/completions, /v1/embeddings, /v1/models.

Each request function turns a parsed body into `(model, n, prompt_tokens, answer)` (see picaco.sim.wire);
`Errors` builds error bodies in the shape api.openai.com sends them.
"""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from typing import Any

from picaco.sim.engine import SimEngine, count_tokens
from picaco.sim.wire import BadRequest, draw, dumps, prompt_tokens, sampling

API = "openai"


def credential(request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


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
                raise BadRequest(f"{where}: only text content parts are supported", where)
        return "".join(out)
    raise BadRequest(f"{where}: content must be a string or a list of text parts", where)


def _model(p: dict) -> str:
    model = p.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required", "model")
    return model


def chat(engine: SimEngine, p: dict, max_choices: int | None = None):
    model = _model(p)
    raw_messages = p.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise BadRequest("'messages' must be a non-empty list", "messages")
    messages = []
    for i, m in enumerate(raw_messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise BadRequest(f"messages[{i}].role must be one of system, developer, user, assistant",
                             f"messages[{i}].role")
        role = "system" if m["role"] == "developer" else m["role"]
        messages.append({"role": role, "content": _text_of(m.get("content"), f"messages[{i}].content")})
    s = sampling(p, n=("n", 128), max_choices=max_choices, top_p="top_p",
                 max_tokens=("max_completion_tokens", "max_tokens"), stop=("stop", "stop", 4))
    s = replace(s, schema=_reply_schema(p.get("response_format")))

    def answer(request_id: str) -> dict:
        reply, drawn, completion_tokens = draw(engine, model, messages, s)
        choices = [{"index": k, "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None, "finish_reason": "stop" if stopped else reason}
                   for k, (text, stopped, reason) in enumerate(drawn)]
        return {"id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": choices, "system_fingerprint": "fp_picaco_sim",
                "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": reply.prompt_tokens + completion_tokens}}

    return model, s.n, prompt_tokens(messages), answer


def _reply_schema(fmt: Any) -> dict | None:
    """The schema of `response_format` in either form picaco sends: json_schema (OpenAI) or json_object with
    a schema (llama.cpp, vLLM)."""
    if not isinstance(fmt, dict):
        return None
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else fmt.get("schema")
    return schema if isinstance(schema, dict) else None


def embeddings(engine: SimEngine, p: dict):
    model = _model(p)
    inp = p.get("input")
    texts = [inp] if isinstance(inp, str) else inp
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("'input' must be a string or a non-empty list of strings", "input")
    if any(t == "" for t in texts):
        raise BadRequest("'input' cannot contain empty strings", "input")
    fmt = p.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", "encoding_format")

    def answer(request_id: str) -> dict:
        vectors = engine.embed(model, texts)
        tokens = sum(count_tokens(t) for t in texts)
        data = []
        for i, v in enumerate(vectors):
            emb = (base64.b64encode(v.astype("<f4").tobytes()).decode() if fmt == "base64"
                   else [float(x) for x in v.tolist()])
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return model, len(texts), None, answer


def models_body(names: list[str]) -> bytes:
    return dumps({"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                              "owned_by": "picaco-sim"} for m in names]})


def filtered(payload: dict) -> dict:
    """A chat answer as a content filter's refusal looks on the wire: every choice emptied."""
    for c in payload["choices"]:
        c["message"]["content"] = None
        c["finish_reason"] = "content_filter"
    payload["usage"]["completion_tokens"] = 0
    payload["usage"]["total_tokens"] = payload["usage"]["prompt_tokens"]
    return payload


class Errors:
    """Error bodies in the shape api.openai.com sends them: (status, body)."""

    @staticmethod
    def _body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
        return dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})

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
