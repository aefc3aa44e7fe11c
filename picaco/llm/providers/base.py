"""The provider contract: one async `generate` for chat, one async `embed` for embeddings.

A provider turns one call into one SDK/HTTP request and maps every failure to `picaco.llm.errors`.
It knows nothing of caching, retries, concurrency or cost: `picaco.llm.client.LLMClient` does those
for all providers alike.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from picaco.base.config import ProviderSettings
from picaco.llm.errors import BadRequest, ContentFiltered, MalformedReply, ProviderError, scrub_secrets
from picaco.llm.request import Message, SamplingParams


@dataclass(frozen=True)
class ChatCall:
    """One request to a provider: `n` samples of `model` for `messages`.

    `seed` is already the per-call seed: the client sends `params.seed + first_sample_index`, so sample
    i of a request is drawn with seed+i however the samples were split across calls.
    """

    model: str  # without the provider prefix
    messages: tuple[Message, ...]
    params: SamplingParams
    n: int
    seed: int | None
    first_index: int = 0  # index of the call's first sample within its request (for seedless simulators)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None = None


@dataclass(frozen=True)
class ChatReply:
    completions: list[Completion]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    request_id: str | None = None


@dataclass(frozen=True)
class EmbedReply:
    vectors: np.ndarray  # float32, shape (len(texts), dim)
    tokens: int = 0
    request_id: str | None = None
    extra: dict = field(default_factory=dict)


class Provider(ABC):
    """One instance per (provider name, settings) in a client; holds the SDK client lazily."""

    #: the name the user wrote before the '/': 'openai', 'vllm', 'gemini', 'sim', 'st'
    name: str
    #: what identifies the server for the cache key: the normalized base_url, or a fixed string
    endpoint: str
    #: the most samples one call can return when the settings do not say (OpenAI's limit on `n`)
    default_max_samples_per_call: int = 128

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings
        self.endpoint = self.endpoint_for(name, settings) or (settings.base_url or "").rstrip("/")

    @classmethod
    def endpoint_for(cls, name: str, settings: ProviderSettings) -> str | None:
        """The endpoint identity from the settings alone: no key, no SDK, no instance. The cache key is
        computed from it before any provider is built, so that a cached answer needs no credentials.
        None: this provider only knows its endpoint once built (the client then builds it)."""
        return None

    @classmethod
    def start_engine(cls, name: str, settings: ProviderSettings) -> Any:
        """A server process this provider's calls need, started (with `base_url`, `alive()` and `stop()`), or
        None. The client starts it before the provider's first call, owns it, and stops it when it closes."""
        return None

    def attach(self, engine: Any) -> None:
        """Point this provider at the running engine `start_engine` returned (called with None as well)."""

    @property
    def concurrency_key(self) -> str:
        return f"{self.name}@{self.endpoint}"

    @property
    def max_samples_per_call(self) -> int:
        return self.settings.max_samples_per_call or self.default_max_samples_per_call

    @abstractmethod
    async def generate(self, call: ChatCall) -> ChatReply:
        """Draw `call.n` samples (a server may return fewer, never more: the client asks again for the
        rest); raise a `picaco.llm.errors.ProviderError` subclass on failure."""

    async def embed(self, model: str, texts: list[str]) -> EmbedReply:
        raise BadRequest(f"provider {self.name!r} has no embeddings endpoint", provider=self.name)

    def embed_batch_size(self) -> int:
        return 256

    async def aclose(self) -> None:
        return None


# sent to servers that need no key; the SDKs refuse to start without one
NO_KEY = "EMPTY"


class SDKProvider(Provider):
    """A provider behind an SDK client with an async connection pool (openai, google-genai).

    The pool is bound to the event loop it first ran on, so there is one SDK client per loop
    (picaco runs a loop per step, and task runners may drive one provider from several threads).
    Subclasses build and close the client; this class keeps them apart per loop and keeps the API
    key out of every message."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self._api_key = NO_KEY
        self._clients: dict[int, tuple[Any, Any]] = {}  # id(event loop) -> (loop, SDK client)
        self._lock = threading.Lock()

    @abstractmethod
    def _new_client(self) -> Any:
        """A fresh SDK client (called with the running loop current)."""

    @abstractmethod
    async def _close_client(self, client: Any) -> None: ...

    def _client(self):
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))  # the entry holds the loop, so its id cannot be reused
        if entry is None:
            with self._lock:
                # forget clients of loops that are gone (a closed loop's pool cannot be closed any more)
                self._clients = {k: v for k, v in self._clients.items() if not v[0].is_closed()}
                entry = self._clients[id(loop)] = (loop, self._new_client())
        return entry[1]

    async def aclose(self) -> None:
        entry = self._clients.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await self._close_client(entry[1])

    @abstractmethod
    def _map_error(self, exc: BaseException, *, what: str) -> ProviderError | None:
        """The typed error for an exception the SDK raised during a call; None when it is not an SDK failure."""

    async def _call(self, what: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """`await make()`, with every SDK failure turned into a typed error by the one scrubbing path.

        The typed error is raised outside the `except` block, so the SDK's exception (whose text is the
        raw server message, possibly echoing the key) is neither its cause nor its context: no traceback,
        log record or task runner that serializes the error can show it."""
        try:
            return await make()
        except Exception as exc:
            failure = self._failure(exc, what)
            if failure is None:  # not an SDK failure (a bug of ours): unchanged
                raise
        raise failure

    def _failure(self, exc: BaseException, what: str) -> ProviderError | None:
        mapped = self._map_error(exc, what=what)
        if mapped is None:
            return None
        return _rebuilt(mapped, self._scrub(mapped.message))

    def _scrub(self, text: str) -> str:
        return scrub_secrets(str(text), [self._api_key if self._api_key != NO_KEY else None])

    # ---- replies: the checks every SDK's reply gets ---------------------------------------------------

    def _checked_reply(self, completions: list[Completion], call: ChatCall, usage: Any, token_fields: tuple[str, str],
                       request_id: str | None) -> ChatReply:
        """The chat reply of `completions`, with the token counts read from `usage` (prompt and completion
        field names). Fewer than n is an answer (servers that ignore n, like llama.cpp and Ollama, return one:
        the client keeps what came and asks again for the rest); more is malformed; every one refused is
        ContentFiltered."""
        if len(completions) > call.n:
            raise MalformedReply(f"asked for n={call.n} samples of {call.model!r} but the server at {self.endpoint} "
                                 f"returned {len(completions)}", provider=self.name, status=200,
                                 request_id=request_id)
        if all(c.finish_reason == "content_filter" and not c.text for c in completions):
            raise ContentFiltered(f"every sample of {call.model!r} was refused by a content filter",
                                  provider=self.name, status=200, request_id=request_id)
        return ChatReply(completions=completions,
                         prompt_tokens=int(getattr(usage, token_fields[0], 0) or 0),
                         completion_tokens=int(getattr(usage, token_fields[1], 0) or 0),
                         request_id=request_id)

    async def embed(self, model: str, texts: list[str]) -> EmbedReply:
        if not texts:
            return EmbedReply(vectors=np.zeros((0, 0), dtype=np.float32))
        return await self._embed(self._client(), model, texts)

    async def _embed(self, client: Any, model: str, texts: list[str]) -> EmbedReply:
        """One embeddings request for the non-empty `texts`."""
        raise BadRequest(f"provider {self.name!r} has no embeddings endpoint", provider=self.name)

    def _embed_reply(self, items: Any, n: int, vectors_of: Callable[[list], list], tokens: int,
                     request_id: str | None) -> EmbedReply:
        """The reply of one embedding per input: `items` the reply's list of embeddings, `vectors_of(items)`
        their vectors in input order; anything else is a malformed reply."""
        try:
            if not isinstance(items, list) or len(items) != n:
                raise ValueError(f"{len(items) if isinstance(items, list) else 'no'} embeddings for {n} inputs")
            vectors = np.asarray(vectors_of(items), dtype=np.float32)
            if vectors.ndim != 2:
                raise ValueError(f"embeddings have ragged or missing values, shape {vectors.shape}")
        except (AttributeError, TypeError, ValueError) as exc:
            raise MalformedReply(f"not an embeddings reply: {one_line(exc)}", provider=self.name, status=200,
                                 request_id=request_id) from None
        return EmbedReply(vectors=vectors, tokens=tokens, request_id=request_id)


def one_line(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _rebuilt(err: ProviderError, message: str) -> ProviderError:
    """The same typed error with a new message (RetriesExhausted never comes from a provider)."""
    return type(err)(message, provider=err.provider, status=err.status, request_id=err.request_id,
                     retry_after=err.retry_after)
