"""Google Gemini through `google-genai` (the Gemini Developer API, or any server speaking it via base_url).

The key comes from the environment variable named by `api_key_env` (default GEMINI_API_KEY). With the
default variable, GOOGLE_API_KEY is accepted too, as google-genai itself does; GEMINI_API_KEY wins when
both are set. With a custom `base_url` (a proxy, `picaco sim-server`) the key may be absent.

google-genai does not retry unless told to, except that its aiohttp transport (used when aiohttp is
installed) retries connection errors after a 1-10 s sleep; setting explicit retry options with a
single attempt turns that off too, so picaco's client owns every retry.
"""

from __future__ import annotations

import os
import re
from typing import Any

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm import errors as llm_errors
from picaco.llm.providers.base import NO_KEY, ChatCall, ChatReply, Completion, EmbedReply, SDKProvider, one_line
from picaco.llm.providers.openai import parse_retry_after

GEMINI_API_BASE = "https://generativelanguage.googleapis.com"

# Gemini's finish reasons that mean "a filter stopped the answer"
_FILTER_REASONS = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                   "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "LANGUAGE"}
_CONTEXT_PATTERNS = ("input token count", "exceeds the maximum number of tokens", "context window",
                     "too long", "token limit")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)s\s*$")


def finish_reason_of(reason: Any) -> str | None:
    """Gemini's FinishReason as the OpenAI-style word the rest of picaco uses."""
    if reason is None:
        return None
    name = getattr(reason, "value", reason)
    name = str(name).upper()
    if name == "STOP":
        return "stop"
    if name == "MAX_TOKENS":
        return "length"
    if name in _FILTER_REASONS:
        return "content_filter"
    return name.lower()


def gemini_schema_config(schema: dict | None) -> dict[str, Any]:
    """A reply schema as Gemini's config fields: JSON output with `response_schema` (an OpenAPI subset,
    which has no additionalProperties)."""
    if schema is None:
        return {}
    return {"response_mime_type": "application/json",
            "response_schema": {k: v for k, v in schema.items() if k != "additionalProperties"}}


class GeminiProvider(SDKProvider):
    default_max_samples_per_call = 8  # generateContent's candidate_count is 1..8

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self.base_url = (settings.base_url or "").rstrip("/") or None
        key_env = settings.api_key_env or "GEMINI_API_KEY"
        key = os.environ.get(key_env)
        if not key and key_env == "GEMINI_API_KEY":
            key = os.environ.get("GOOGLE_API_KEY")
        required = settings.require_key if settings.require_key is not None else self.base_url is None
        if not key and required:
            extra = " (or GOOGLE_API_KEY)" if key_env == "GEMINI_API_KEY" else ""
            raise ConfigError(f"{key_env} is not set: export it{extra} to use provider {name!r}")
        self._api_key = key or NO_KEY

    @classmethod
    def endpoint_for(cls, name: str, settings: ProviderSettings) -> str:
        return (settings.base_url or "").rstrip("/") or GEMINI_API_BASE

    # ---- SDK client --------------------------------------------------------------------------------

    def _new_client(self):
        from google import genai
        from google.genai import types

        http_options = types.HttpOptions(
            base_url=self.base_url,
            timeout=max(1, int(round(self.settings.timeout_s * 1000))),
            retry_options=types.HttpRetryOptions(attempts=1),  # picaco's client does the retries
        )
        return genai.Client(api_key=self._api_key, vertexai=False, http_options=http_options)

    async def _close_client(self, client) -> None:
        await client.aio.aclose()

    # ---- calls -------------------------------------------------------------------------------------

    async def generate(self, call: ChatCall) -> ChatReply:
        from google.genai import types

        p = call.params
        system = "\n\n".join(m.content for m in call.messages if m.role == "system") or None
        contents = [types.Content(role="user" if m.role == "user" else "model", parts=[types.Part(text=m.content)])
                    for m in call.messages if m.role != "system"]
        if not contents:
            raise llm_errors.BadRequest("Gemini needs at least one user message; got only a system message",
                                        provider=self.name)
        config = types.GenerateContentConfig(
            system_instruction=system,
            candidate_count=call.n,
            seed=call.seed,
            temperature=p.temperature,
            max_output_tokens=p.max_tokens,
            top_p=p.top_p,
            stop_sequences=list(p.stop) if p.stop else None,
            **gemini_schema_config(p.schema_dict()),
        )
        client = self._client()
        resp = await self._call(f"generate_content with model {call.model!r}",
                                lambda: client.aio.models.generate_content(model=call.model, contents=contents,
                                                                           config=config))
        return self._chat_reply(resp, call)

    def _chat_reply(self, resp: Any, call: ChatCall) -> ChatReply:
        request_id = getattr(resp, "response_id", None) or _header(getattr(resp, "sdk_http_response", None),
                                                                   "x-request-id")
        kw: dict[str, Any] = {"provider": self.name, "status": 200, "request_id": request_id}
        feedback = getattr(resp, "prompt_feedback", None)
        block = getattr(feedback, "block_reason", None) if feedback is not None else None
        if block is not None:
            reason = getattr(block, "value", block)
            raise llm_errors.ContentFiltered(f"the prompt to {call.model!r} was blocked ({reason})", **kw)
        candidates = getattr(resp, "candidates", None)
        if not candidates:
            raise llm_errors.MalformedReply(f"chat with model {call.model!r}: the reply has no 'candidates' (not a "
                                 f"generateContent response)", **kw)
        ordered = sorted(enumerate(candidates), key=lambda ic: (ic[1].index if ic[1].index is not None else ic[0]))
        completions = []
        for _, cand in ordered:
            parts = (cand.content.parts if cand.content is not None else None) or []
            text = "".join(part.text for part in parts if isinstance(part.text, str) and not part.thought)
            completions.append(Completion(text=text, finish_reason=finish_reason_of(cand.finish_reason)))
        return self._checked_reply(completions, call, getattr(resp, "usage_metadata", None),
                                   ("prompt_token_count", "candidates_token_count"), request_id)

    async def _embed(self, client: Any, model: str, texts: list[str]) -> EmbedReply:
        resp = await self._call(f"embed_content with model {model!r}", lambda: client.aio.models.embed_content(
            model=model, contents=list(texts)))
        return self._embed_reply(getattr(resp, "embeddings", None), len(texts), lambda es: [e.values for e in es],
                                 0, _header(getattr(resp, "sdk_http_response", None), "x-request-id"))

    def embed_batch_size(self) -> int:
        return 100  # batchEmbedContents takes at most 100 requests

    # ---- errors ------------------------------------------------------------------------------------

    def _map_error(self, exc: BaseException, *, what: str) -> llm_errors.ProviderError | None:
        """The typed error for an exception raised by google-genai during a call; None when it is not one."""
        import json

        import pydantic
        from google.genai import errors as genai_errors

        where = self.endpoint
        if isinstance(exc, genai_errors.APIError):
            return self._map_api_error(exc, what)
        if isinstance(exc, genai_errors.UnknownApiResponseError):
            return llm_errors.MalformedReply(f"{what}: the reply body is not valid JSON (truncated or malformed)",
                                             provider=self.name, status=200)
        if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError)):
            return llm_errors.MalformedReply(f"{what}: the reply is not the API's shape: {one_line(exc, 160)}",
                                             provider=self.name, status=200)
        kind = _transport_kind(exc)
        if kind == "timeout":
            return llm_errors.TransientError(f"{what} timed out after {self.settings.timeout_s:g}s at {where}",
                                             provider=self.name)
        if kind == "connect":
            return llm_errors.Unreachable(f"cannot connect to {where} ({type(exc).__name__})", provider=self.name)
        if kind == "transport":
            return llm_errors.TransientError(f"connection to {where} failed mid-request: "
                                             f"{one_line(self._scrub(f'{type(exc).__name__}: {exc}'), 200)}",
                                             provider=self.name)
        return None

    def _map_api_error(self, exc: Any, what: str) -> llm_errors.ProviderError:
        status = int(exc.code) if isinstance(exc.code, int) else 0
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        request_id = _header_of(headers, "x-request-id")
        message = one_line(self._scrub(exc.message or str(exc)))
        rpc_status = exc.status or ""
        details = _error_details(exc.details)
        kw: dict[str, Any] = {"provider": self.name, "request_id": request_id}
        code: dict[str, Any] = {"status": status or None}
        text = f"{what}: {rpc_status + ': ' if rpc_status else ''}{message}"
        if status == 429:
            retry_after = parse_retry_after(headers)
            if retry_after is None:
                retry_after = _retry_delay(details)
            return llm_errors.RateLimited(text, retry_after=retry_after, **code, **kw)
        if status in (401, 403) or any(d.get("reason") == "API_KEY_INVALID" for d in details) \
                or "api key not valid" in message.lower():
            return llm_errors.AuthError(f"{text} (at {self.endpoint})", **code, **kw)
        if status == 404:
            return llm_errors.BadRequest(f"{text} (unknown model?)", **code, **kw)
        if status == 400 and any(p in message.lower() for p in _CONTEXT_PATTERNS):
            return llm_errors.ContextTooLong(text, **code, **kw)
        if status >= 500:
            return llm_errors.TransientError(text, **code, **kw)
        if not status:
            return llm_errors.BadRequest(f"{text} (at {self.endpoint})", **kw)
        return llm_errors.error_for_status(status, f"{text} (at {self.endpoint})", **kw)


def _transport_kind(exc: BaseException) -> str | None:
    """Classify httpx/httpx2/aiohttp transport exceptions without importing either httpx flavour."""
    mro = type(exc).__mro__
    root = type(exc).__module__.split(".")[0]
    names = {cls.__name__ for cls in mro}
    if root in ("httpx", "httpx2"):
        if "TimeoutException" in names:
            return "connect" if "ConnectTimeout" in names else "timeout"
        if "ConnectError" in names:
            return "connect"
        if "TransportError" in names:
            return "transport"
        return None
    if root == "aiohttp":
        if "ClientConnectorError" in names:
            return "connect"
        if "ServerTimeoutError" in names:
            return "timeout"
        if "ClientError" in names:
            return "transport"
        return None
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect"
    return None


def _error_details(details: Any) -> list[dict]:
    if isinstance(details, list) and len(details) == 1:
        details = details[0]
    err = details.get("error", details) if isinstance(details, dict) else {}
    items = err.get("details") if isinstance(err, dict) else None
    return [d for d in items if isinstance(d, dict)] if isinstance(items, list) else []


def _retry_delay(details: list[dict]) -> float | None:
    """google.rpc.RetryInfo's retryDelay ("37s", "0.05s") in seconds."""
    for d in details:
        if str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            m = _DURATION.match(str(d.get("retryDelay", "")))
            if m:
                return float(m.group(1))
    return None


def _header_of(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return value if isinstance(value, str) else None


def _header(sdk_http_response: Any, name: str) -> str | None:
    headers = getattr(sdk_http_response, "headers", None)
    if isinstance(headers, dict):
        lowered = {str(k).lower(): v for k, v in headers.items()}
        value = lowered.get(name)
        return value if isinstance(value, str) else None
    return _header_of(headers, name)
