"""The Gemini wire format of the simulator server: POST /{version}/models/{model}:{method}, with method
generateContent, batchEmbedContents or embedContent.

Each request function turns a parsed body into `(model, n, prompt_tokens, answer)` (see picaco.sim.wire);
`Errors` builds error bodies in the shape generativelanguage.googleapis.com sends them (google.rpc.Status).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from picaco.sim.engine import SimEngine
from picaco.sim.wire import BadRequest, draw, dumps, prompt_tokens, sampling

API = "gemini"
METHODS = ("generateContent", "batchEmbedContents", "embedContent")


def credential(request) -> str | None:
    return request.headers.get("x-goog-api-key") or request.query_params.get("key")


def split_target(target: str) -> tuple[str, str] | None:
    """'{model}:{method}' of the URL path -> (model, method), None for a method this server lacks."""
    model, sep, method = target.rpartition(":")
    return (model, method) if sep and method in METHODS else None


def unknown_method_body(target: str) -> bytes:
    return dumps({"error": {"code": 404, "message": f"unknown method {target!r}", "status": "NOT_FOUND"}})


def _text(content: Any, where: str) -> str:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        raise BadRequest(f"{where} must be an object with a 'parts' list", where)
    out = []
    for j, part in enumerate(content["parts"]):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise BadRequest(f"{where}.parts[{j}] must be a text part", f"{where}.parts[{j}]")
        out.append(part["text"])
    return "".join(out)


def chat(engine: SimEngine, model: str, p: dict, max_choices: int | None = None):
    messages = []
    system = p.get("systemInstruction")
    if system is not None:
        messages.append({"role": "system", "content": _text(system, "systemInstruction")})
    contents = p.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("contents must be a non-empty list", "contents")
    for i, c in enumerate(contents):
        if not isinstance(c, dict):
            raise BadRequest(f"contents[{i}] must be an object", f"contents[{i}]")
        role = c.get("role", "user")
        if role not in ("user", "model"):
            raise BadRequest(f"contents[{i}].role must be 'user' or 'model', got {role!r}", f"contents[{i}].role")
        messages.append({"role": "user" if role == "user" else "assistant", "content": _text(c, f"contents[{i}]")})
    g = p.get("generationConfig") or {}
    if not isinstance(g, dict):
        raise BadRequest("generationConfig must be an object", "generationConfig")
    s = sampling(g, n=("candidateCount", 8), max_choices=max_choices, top_p="topP", max_tokens=("maxOutputTokens",),
                 stop=("stopSequences", "generationConfig.stopSequences", 5))
    schema = g.get("responseSchema")
    s = replace(s, schema=schema if isinstance(schema, dict) else None)

    def answer(request_id: str) -> dict:
        reply, drawn, completion_tokens = draw(engine, model, messages, s)
        candidates = [{"content": {"parts": [{"text": text}], "role": "model"},
                       "finishReason": "STOP" if stopped or reason == "stop" else "MAX_TOKENS", "index": k}
                      for k, (text, stopped, reason) in enumerate(drawn)]
        return {"candidates": candidates,
                "usageMetadata": {"promptTokenCount": reply.prompt_tokens,
                                  "candidatesTokenCount": completion_tokens,
                                  "totalTokenCount": reply.prompt_tokens + completion_tokens},
                "modelVersion": model, "responseId": request_id}

    return model, s.n, prompt_tokens(messages), answer


def embeddings(engine: SimEngine, model: str, method: str, p: dict):
    if method == "embedContent":
        texts = [_text(p.get("content"), "content")]
    else:
        reqs = p.get("requests")
        if not isinstance(reqs, list) or not reqs:
            raise BadRequest("requests must be a non-empty list", "requests")
        texts = [_text(r.get("content") if isinstance(r, dict) else None, f"requests[{i}].content")
                 for i, r in enumerate(reqs)]

    def answer(request_id: str) -> dict:
        vectors = engine.embed(model, texts)
        embs = [{"values": [float(x) for x in v.tolist()]} for v in vectors]
        return {"embedding": embs[0]} if method == "embedContent" else {"embeddings": embs}

    return model, len(texts), None, answer


def filtered(payload: dict) -> dict:
    """A generateContent answer as a safety block looks on the wire: the prompt blocked, no candidates."""
    usage = payload["usageMetadata"]
    return {"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": usage["promptTokenCount"],
                              "totalTokenCount": usage["promptTokenCount"]},
            "modelVersion": payload["modelVersion"], "responseId": payload["responseId"]}


class Errors:
    """Error bodies in the shape generativelanguage.googleapis.com sends them: (status, body)."""

    @staticmethod
    def _body(code: int, message: str, status: str, details: list | None = None) -> bytes:
        err: dict = {"code": code, "message": message, "status": status}
        if details:
            err["details"] = details
        return dumps({"error": err})

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
