"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp, `picaco sim-server`).

One `AsyncOpenAI` per provider instance and event loop, with the SDK's own retries off: picaco's client
retries, so that the retry policy, its budget and its log are the same for every provider. Every SDK
failure is mapped to `picaco.llm.errors`, carrying the HTTP status and the request id.

Chat goes through the SDK's documented `client.post(path, body=..., cast_to=ChatCompletion)` rather than
`client.chat.completions.create(...)`: the same client, auth, headers, timeouts, error classes and typed
reply, minus `create`'s recursive TypedDict transform of the body, which is the identity for the plain
JSON body built here but cost ~1 ms of CPU per call (of ~3 ms) on this machine, in the event loop that
every concurrent call shares. tests/llm/providers/test_openai.py checks that both send the same request.

Options (`ProviderSettings.options`):
  max_tokens_param   "max_tokens" (default) or "max_completion_tokens" (OpenAI's reasoning models
                     refuse max_tokens; most compatible servers only know max_tokens)
  schema_form        how a request's response_schema goes on the wire: "openai" (response_format
                     json_schema, strict), "json_object" (response_format {"type": "json_object",
                     "schema": ...}: llama.cpp, vLLM, Ollama) or "none" (free text). Default: json_object
                     for llamacpp, vllm and ollama, openai otherwise. A server that rejects the schema
                     (400/422/500 naming response_format) gets free text for the rest of the run, said
                     once in the log.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from typing import Any

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm import errors as llm_errors
from picaco.llm.providers.base import NO_KEY, ChatCall, ChatReply, Completion, EmbedReply, SDKProvider, one_line

OPENAI_API_BASE = "https://api.openai.com/v1"
_CONTEXT_CODES = ("context_length_exceeded", "string_above_max_length")
SCHEMA_FORMS = ("openai", "json_object", "none")
_JSON_OBJECT_KINDS = ("llamacpp", "vllm", "ollama")
log = logging.getLogger(__name__)


def response_format(schema: dict, form: str) -> dict | None:
    """The wire form of a reply schema for an OpenAI-compatible server; None for free text."""
    if form == "openai":
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
    if form == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def is_self_hosted(name: str, settings: ProviderSettings) -> bool:
    """A self-hosted engine (llama.cpp, vLLM, Ollama: the json_object schema form by default), where small
    models that need a reply schema run."""
    return (settings.kind or name) in _JSON_OBJECT_KINDS or name in _JSON_OBJECT_KINDS


def rejects_schema(err: llm_errors.ProviderError) -> bool:
    """A server's refusal of the response_format it was sent (llama.cpp answers 500, others 400/422)."""
    return err.status in (400, 422, 500) and "response_format" in err.message


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds, possibly fractional, or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def is_openai_hosted(base_url: str) -> bool:
    return base_url.rstrip("/").lower().startswith("https://api.openai.com")


def _chat_completion_type():
    from openai.types.chat import ChatCompletion

    return ChatCompletion


class OpenAIProvider(SDKProvider):
    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self.base_url = self.endpoint
        hosted = is_openai_hosted(self.base_url)
        key_env = settings.api_key_env or ("OPENAI_API_KEY" if hosted else None)
        key = os.environ.get(key_env) if key_env else None
        required = settings.require_key if settings.require_key is not None else hosted
        if not key and required:
            raise ConfigError(f"{key_env or 'the API key variable (api_key_env)'} is not set: export it to use "
                              f"provider {name!r}")
        self._api_key = key or NO_KEY
        param = str(settings.options.get("max_tokens_param", "max_tokens"))
        if param not in ("max_tokens", "max_completion_tokens"):
            raise ConfigError(f"provider {name!r}: options.max_tokens_param must be 'max_tokens' or "
                              f"'max_completion_tokens', got {param!r}")
        self._max_tokens_param = param
        default_form = "json_object" if is_self_hosted(name, settings) else "openai"
        form = str(settings.options.get("schema_form", default_form))
        if form not in SCHEMA_FORMS:
            raise ConfigError(f"provider {name!r}: options.schema_form must be one of {', '.join(SCHEMA_FORMS)}, "
                              f"got {form!r}")
        self.schema_form = form

    @classmethod
    def endpoint_for(cls, name: str, settings: ProviderSettings) -> str:
        return (settings.base_url or OPENAI_API_BASE).rstrip("/")

    # ---- SDK client --------------------------------------------------------------------------------

    def _new_client(self):
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, max_retries=0,
                                  timeout=self.settings.timeout_s)

    async def _close_client(self, client) -> None:
        await client.close()

    # ---- calls -------------------------------------------------------------------------------------

    async def generate(self, call: ChatCall) -> ChatReply:
        p = call.params
        kwargs: dict[str, Any] = {
            "model": call.model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            "n": call.n,
            "temperature": p.temperature,
        }
        if call.seed is not None:
            kwargs["seed"] = call.seed
        if p.max_tokens is not None:
            kwargs[self._max_tokens_param] = p.max_tokens
        if p.top_p is not None:
            kwargs["top_p"] = p.top_p
        if p.stop:
            kwargs["stop"] = list(p.stop)
        form = self.schema_form
        schema = p.schema_dict()
        fmt = response_format(schema, form) if schema is not None else None
        if fmt is not None:
            kwargs["response_format"] = fmt
        try:
            resp = await self._post_chat(call, kwargs)
        except llm_errors.ProviderError as err:
            if fmt is None or not rejects_schema(err):
                raise
            if self.schema_form != "none":
                self.schema_form = "none"
                log.warning("provider %r at %s rejects response_format (%s form): judge and optimizer replies are "
                            "free text for the rest of the run (options.schema_form: none says so up front): %s",
                            self.name, self.base_url, form, err.message)
            kwargs.pop("response_format")
            resp = await self._post_chat(call, kwargs)
        return self._chat_reply(resp, call)

    async def _post_chat(self, call: ChatCall, body: dict[str, Any]) -> Any:
        client = self._client()
        return await self._call(f"chat with model {call.model!r}", lambda: client.post(
            "/chat/completions", body=body, cast_to=_chat_completion_type(),
            options={"security": {"bearer_auth": True}}))

    def _chat_reply(self, resp: Any, call: ChatCall) -> ChatReply:
        request_id = getattr(resp, "_request_id", None) or getattr(resp, "id", None)
        if not isinstance(request_id, str):
            request_id = None
        choices = getattr(resp, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise llm_errors.MalformedReply(
                f"chat with model {call.model!r}: the reply has no 'choices' (not a chat completion)",
                provider=self.name, status=200, request_id=request_id)
        try:
            ordered = sorted(choices, key=lambda c: c.index if isinstance(c.index, int) else 0)
            completions = []
            for c in ordered:
                content = c.message.content if c.message is not None else None
                if content is not None and not isinstance(content, str):
                    raise TypeError(f"message.content is {type(content).__name__}")
                completions.append(Completion(text=content or "", finish_reason=c.finish_reason))
        except (AttributeError, TypeError) as exc:
            raise llm_errors.MalformedReply(f"a choice is not a chat completion choice: {one_line(exc)}",
                                            provider=self.name, status=200, request_id=request_id) from None
        return self._checked_reply(completions, call, getattr(resp, "usage", None),
                                   ("prompt_tokens", "completion_tokens"), request_id)

    async def _embed(self, client: Any, model: str, texts: list[str]) -> EmbedReply:
        # floats, not the SDK's default base64: several compatible servers only speak floats
        resp = await self._call(f"embeddings with model {model!r}", lambda: client.embeddings.create(
            model=model, input=list(texts), encoding_format="float"))

        def in_order(data: list) -> list:
            ordered = sorted(data, key=lambda d: d.index)
            if [d.index for d in ordered] != list(range(len(texts))):
                raise ValueError("embedding indices are not 0..n-1")
            return [d.embedding for d in ordered]

        usage = getattr(resp, "usage", None)
        return self._embed_reply(getattr(resp, "data", None), len(texts), in_order,
                                 int(getattr(usage, "prompt_tokens", 0) or 0), getattr(resp, "_request_id", None))

    def embed_batch_size(self) -> int:
        return 256

    # ---- errors ------------------------------------------------------------------------------------

    def _map_error(self, exc: BaseException, *, what: str) -> llm_errors.ProviderError | None:
        """The typed error for an exception raised by the SDK during a call; None when it is not one."""
        import openai
        import pydantic

        name = self.name
        if isinstance(exc, openai.APITimeoutError):
            if type(_root_cause(exc)).__name__ == "ConnectTimeout":
                return llm_errors.Unreachable(f"cannot connect to {self.base_url} (no answer within "
                                   f"{self.settings.timeout_s:g}s)", provider=name)
            return llm_errors.TransientError(f"{what} timed out after {self.settings.timeout_s:g}s at {self.base_url}",
                                             provider=name)
        if isinstance(exc, openai.APIConnectionError):
            cause = _root_cause(exc)
            if _is_connect_failure(cause):
                return llm_errors.Unreachable(f"cannot connect to {self.base_url} ({type(cause).__name__})",
                                              provider=name)
            return llm_errors.TransientError(f"connection to {self.base_url} failed mid-request: "
                                             f"{one_line(self._scrub(f'{type(cause).__name__}: {cause}'), 200)}",
                                             provider=name)
        if isinstance(exc, openai.APIResponseValidationError):
            return llm_errors.MalformedReply(f"{what}: the reply does not match the API schema", provider=name,
                                             status=exc.status_code,
                                             request_id=exc.response.headers.get("x-request-id"))
        if isinstance(exc, openai.APIStatusError):
            return self._map_status(exc, what)
        if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError)):
            return llm_errors.MalformedReply(f"{what}: the reply body is not valid API JSON (truncated or malformed): "
                                             f"{one_line(exc, 120)}", provider=name, status=200)
        if isinstance(exc, openai.OpenAIError):
            return llm_errors.ProviderError(f"{what}: {one_line(self._scrub(str(exc)))}", provider=name)
        # not an SDK failure (a bug of ours, a cancellation): the caller re-raises it unchanged
        return None

    def _map_status(self, exc: Any, what: str) -> llm_errors.ProviderError:
        import openai

        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body.get("message"), str) else exc.message
        message = one_line(self._scrub(message or str(exc)))
        code = body.get("code") if isinstance(body.get("code"), str) else None
        kw = {"provider": self.name, "request_id": exc.request_id}
        if isinstance(exc, openai.RateLimitError) or status == 429:
            return llm_errors.RateLimited(f"{what}: {message}", status=status,
                                          retry_after=parse_retry_after(exc.response.headers), **kw)
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)) or status in (401, 403):
            return llm_errors.AuthError(f"{what} at {self.base_url}: {message}", status=status, **kw)
        if isinstance(exc, openai.NotFoundError) or status == 404:
            return llm_errors.BadRequest(f"{what} at {self.base_url}: not found (unknown model?): {message}",
                                         status=status, **kw)
        if status == 400 and code in _CONTEXT_CODES:
            return llm_errors.ContextTooLong(f"{what}: {message}", status=status, **kw)
        if status >= 500:
            return llm_errors.TransientError(f"{what}: server error: {message}", status=status, **kw)
        return llm_errors.error_for_status(status, f"{what} at {self.base_url}: {message}", **kw)


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    return exc


def _is_connect_failure(exc: BaseException) -> bool:
    """True when no connection was made at all (refused, DNS), as opposed to one dropped mid-request."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectError", "ConnectionRefusedError", "gaierror", "ConnectTimeout"})
