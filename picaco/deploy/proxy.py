"""The ASGI app of `picaco serve`: an OpenAI-compatible endpoint that puts a run's meta-instruction in
front of every chat request and forwards it to the target.

  POST /v1/chat/completions  the messages get the instruction (merge_system), `model` becomes the
                             target's model, everything else is forwarded as sent; with `stream: true`
                             the target's server-sent events are relayed chunk by chunk as they arrive
  GET  /v1/models            the one model this endpoint serves

The application's Authorization header is never forwarded: requests to the target carry the server's
own key (or none). A target error comes back with its status and its body, with the key and anything
shaped like a credential replaced by *** (a gateway may echo the Authorization header it received).
One upstream (picaco/deploy/upstream.py: one pool of kept-alive connections to the target) serves every
request.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager

from picaco.deploy.upstream import UPSTREAMS, FastUpstream, HttpxUpstream, UpstreamError, UpstreamTimeout
from picaco.llm.errors import scrub_secrets
from picaco.sim.request_body import MIB, BodyNotJSON, BodyTooLarge, parse_json_object, read_body

log = logging.getLogger("picaco.serve")
SYSTEM_ROLES = ("system", "developer")


def merge_system(instruction: str, messages: list[dict]) -> list[dict]:
    """The instruction first: in the application's leading system (or developer) message, before its text
    and separated by a blank line, else as a new system message in front. Some models accept a single
    system message only, hence one message, not two."""
    if messages and messages[0].get("role") in SYSTEM_ROLES:
        first = dict(messages[0])
        content = first.get("content")
        if isinstance(content, list):  # content parts: the instruction becomes the first text part
            first["content"] = [{"type": "text", "text": instruction + "\n\n"}, *content]
        elif content:
            first["content"] = f"{instruction}\n\n{content}"
        else:
            first["content"] = instruction
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _error_body(message: str, type_: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


def sse_from_completion(completion: dict) -> bytes:
    """A whole chat completion as the chunk stream a streaming request expects, for a target that answers
    `stream: true` with one JSON body (the simulator does): one content chunk per choice, then
    the finish reasons, then [DONE]."""
    base = {k: completion.get(k) for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    events = []
    for choice in completion.get("choices") or []:
        message = choice.get("message") or {}
        delta = {"role": "assistant", "content": message.get("content")}
        events.append(dict(base, choices=[{"index": choice.get("index", 0), "delta": delta, "finish_reason": None}]))
        events.append(dict(base, choices=[{"index": choice.get("index", 0), "delta": {},
                                           "finish_reason": choice.get("finish_reason")}]))
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


class ProxyApp:
    def __init__(self, system_prompt: str, model: str, base_url: str, api_key: str | None = None,
                 timeout_s: float = 60.0, max_body_mb: float = 8.0, max_connections: int = 256,
                 upstream: str = "fast") -> None:
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.system_prompt = system_prompt
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._timeout_s = timeout_s
        self._max_body = int(max_body_mb * MIB)
        self._max_connections = max_connections
        if upstream not in UPSTREAMS:
            raise ValueError(f"upstream must be one of {', '.join(UPSTREAMS)}, got {upstream!r}")
        self._upstream_kind = upstream
        self.upstream: FastUpstream | HttpxUpstream | None = None
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ], lifespan=self._lifespan)

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)

    @asynccontextmanager
    async def _lifespan(self, app):
        headers = {"authorization": f"Bearer {self._key}"} if self._key else {}
        upstream = UPSTREAMS[self._upstream_kind](self.base_url, headers, self._timeout_s, self._max_connections)
        self.upstream = upstream
        try:
            yield
        finally:
            await upstream.aclose()

    def _scrub(self, text: str) -> str:
        return scrub_secrets(text, [self._key])

    @staticmethod
    def _json(status: int, body: bytes, headers: dict | None = None):
        from starlette.responses import Response

        return Response(body, status_code=status, headers=headers, media_type="application/json")

    async def _models(self, request):
        return self._json(200, json.dumps({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "picaco-serve"}]}).encode())

    async def _chat(self, request):
        try:
            payload = parse_json_object(await read_body(request, self._max_body))
        except BodyTooLarge as exc:
            return self._json(413, _error_body(str(exc), "invalid_request_error", "request_too_large"),
                              {"connection": "close"})
        except BodyNotJSON as exc:
            return self._json(400, _error_body(str(exc), "invalid_request_error"))
        messages = payload.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return self._json(400, _error_body("'messages' must be a list of message objects",
                                               "invalid_request_error"))
        payload["messages"] = merge_system(self.system_prompt, messages)
        payload["model"] = self.model
        stream = payload.get("stream") is True
        upstream = self.upstream
        assert upstream is not None  # opened by the lifespan before the first request
        t0 = time.perf_counter()
        try:
            resp = await upstream.post("chat/completions", json.dumps(payload).encode())
        except UpstreamTimeout:
            return self._json(504, _error_body(f"the target at {self.base_url} did not answer within "
                                                    f"{self._timeout_s:g} s", "api_error", "target_timeout"))
        except UpstreamError as exc:
            reason = self._scrub(str(exc) or type(exc).__name__)
            log.warning("target %s unreachable: %s", self.base_url, reason)
            return self._json(502, _error_body(f"the target at {self.base_url} is unreachable: {reason}",
                                               "api_error", "target_unreachable"))
        request_id = resp.header("x-request-id")
        headers = {"x-request-id": request_id} if request_id is not None else {}
        content_type = resp.header("content-type", "application/json") or "application/json"
        if not stream or resp.status >= 400 or not content_type.startswith("text/event-stream"):
            try:
                body = await resp.read()
            except UpstreamError as exc:
                return self._json(502, _error_body(f"the target's reply broke off: {self._scrub(str(exc))}",
                                                   "api_error", "target_unreachable"))
            finally:
                await resp.aclose()
            if resp.status >= 400:
                log.info("target answered %s after %.1f ms", resp.status, (time.perf_counter() - t0) * 1e3)
                body = self._scrub(body.decode("utf-8", errors="replace")).encode()
            elif stream:
                return self._sse_of_whole(body, headers)
            from starlette.responses import Response

            return Response(body, status_code=resp.status, headers=headers, media_type=content_type)
        return self._relay(resp, headers, content_type)

    def _sse_of_whole(self, body: bytes, headers: dict):
        from starlette.responses import Response

        try:
            completion = json.loads(body)
        except ValueError:
            return self._json(502, _error_body("the target answered a streaming request with neither an "
                                                    "event stream nor JSON", "api_error", "target_malformed"))
        return Response(sse_from_completion(completion), headers=headers, media_type="text/event-stream")

    def _relay(self, resp, headers: dict, content_type: str):
        from starlette.background import BackgroundTask
        from starlette.responses import StreamingResponse

        async def chunks():
            try:
                async for chunk in resp.chunks():
                    yield chunk
            except UpstreamError as exc:
                # the status line is out: all that is left is to end the stream, which the client sees
                # as a stream without its [DONE]
                log.warning("target stream broke off: %s", self._scrub(str(exc)))

        return StreamingResponse(chunks(), status_code=resp.status, headers=headers, media_type=content_type,
                                 background=BackgroundTask(resp.aclose))
