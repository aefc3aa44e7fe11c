"""The provider contract: one async `generate` for chat, one async `embed` for embeddings.

A provider turns one call into one SDK/HTTP request and maps every failure to `picaco.llm.errors`.
It knows nothing of caching, retries, concurrency or cost: `picaco.llm.client.LLMClient` does those
for all providers alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict

from picaco.llm.request import Message, SamplingParams


class ProviderSettings(BaseModel):
    """How to reach one provider. None of this enters a cache key except `base_url` (the endpoint)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: str | None = None  # the provider implementation; defaults to the provider name ('vllm' -> kind 'openai')
    base_url: str | None = None
    api_key_env: str | None = None  # the environment variable holding the key; never the key itself
    timeout_s: float = 60.0
    max_concurrency: int = 64
    options: dict[str, str | int | float | bool] = {}


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

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings
        self.endpoint = (settings.base_url or "").rstrip("/")

    @property
    def concurrency_key(self) -> str:
        return f"{self.name}@{self.endpoint}"

    @abstractmethod
    async def generate(self, call: ChatCall) -> ChatReply:
        """Draw `call.n` samples; raise a `picaco.llm.errors.ProviderError` subclass on failure."""

    async def embed(self, model: str, texts: list[str]) -> EmbedReply:
        from picaco.llm.errors import BadRequest

        raise BadRequest(f"provider {self.name!r} has no embeddings endpoint", provider=self.name)

    def embed_batch_size(self) -> int:
        return 256

    async def aclose(self) -> None:
        return None
