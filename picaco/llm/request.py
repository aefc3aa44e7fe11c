"""Typed requests and replies of the call layer, and their content-addressed cache keys.

A chat key is sha256 over the canonical JSON `{"request": <request>, "sample": <index>}`, where
<request> holds the key-schema version, provider, model, endpoint identity, messages, every sampling
parameter, the role and any extra key parts (such as the template version). `n` is not part of the key:
the i-th sample of a request is the same cache entry whether it was drawn in a call for 1, 10 or 12
samples. API keys, timeouts, retry and concurrency settings never enter a request, so they cannot enter
a key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from picaco.base.errors import ConfigError

# Bump when the meaning of a cached entry changes; old entries then simply stop matching.
KEY_SCHEMA_VERSION = 1

Role = Literal["target", "judge", "optimizer", "embedding", "other"]
ROLES: tuple[str, ...] = ("target", "judge", "optimizer", "embedding", "other")


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def split_model(model: str) -> tuple[str, str]:
    """'openai/gpt-4o-mini' -> ('openai', 'gpt-4o-mini'); the model part may itself contain '/'."""
    provider, sep, name = model.partition("/")
    if not sep or not provider or not name:
        raise ConfigError(f"model {model!r} is not of the form 'provider/model' (e.g. 'openai/gpt-4o-mini')")
    return provider, name


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class SamplingParams(BaseModel):
    """Every parameter that changes what a model answers. All of them are part of the cache key."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    temperature: float = 1.0
    max_tokens: int | None = 512
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    # a JSON schema the reply must follow, as canonical JSON (`json_schema`), or None for free text;
    # each provider maps it to its wire form (docs/call_layer.md, "Structured replies")
    response_schema: str | None = None

    @field_validator("response_schema")
    @classmethod
    def _schema_canonical(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            parsed = json.loads(v)
        except ValueError as exc:
            raise ValueError(f"response_schema is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("response_schema must be a JSON object")
        return canonical_json(parsed)

    def schema_dict(self) -> dict | None:
        """The response schema as a dict, or None."""
        return None if self.response_schema is None else json.loads(self.response_schema)

    @field_validator("temperature")
    @classmethod
    def _temperature_range(cls, v: float) -> float:
        if not 0.0 <= v <= 2.0:
            raise ValueError(f"temperature must be within [0, 2], got {v}")
        return float(v)


class ChatRequest(BaseModel):
    """What the caller asks for, minus how many samples: `LLMClient.chat(request, n=...)` says that."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str  # "provider/model"
    messages: tuple[Message, ...]
    params: SamplingParams = Field(default_factory=SamplingParams)
    role: Role = "other"
    # Extra parts of the key that do not reach the provider, e.g. {"template": "fig7@1"}.
    key_extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls,
        model: str,
        system: str | None,
        user: str,
        *,
        role: Role = "other",
        key_extra: dict[str, str] | None = None,
        **params,
    ) -> "ChatRequest":
        messages = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=user)]
        return cls(
            model=model,
            messages=tuple(messages),
            params=SamplingParams(**params),
            role=role,
            key_extra=tuple(sorted((key_extra or {}).items())),
        )

    def key_prefix(self, endpoint: str) -> "hashlib._Hash":
        """A sha256 already fed with everything of the canonical key JSON but the sample index."""
        provider, name = split_model(self.model)
        body = {
            "v": KEY_SCHEMA_VERSION,
            "kind": "chat",
            "provider": provider,
            "model": name,
            "endpoint": endpoint,
            "messages": [[m.role, m.content] for m in self.messages],
            "params": _key_params(self.params),
            "role": self.role,
            "extra": [list(kv) for kv in self.key_extra],
        }
        h = hashlib.sha256()
        h.update(('{"request":' + canonical_json(body) + ',"sample":').encode())
        return h

    def sample_keys(self, endpoint: str, start: int, n: int) -> list[str]:
        return keys_from_prefix(self.key_prefix(endpoint), start, n)


def _key_params(params: SamplingParams) -> dict:
    """The params part of a key; without a schema it is what it was before the schema existed (old keys hold)."""
    body = params.model_dump(mode="json")
    if body.get("response_schema") is None:
        body.pop("response_schema", None)
    return body


def scores_schema(values: list[str] | tuple[str, ...], low: int = 1, high: int = 5) -> str:
    """The judge's reply schema: an object with one required integer low..high per value, as canonical JSON."""
    props = {v: {"type": "integer", "minimum": low, "maximum": high} for v in values}
    return canonical_json({"type": "object", "properties": props, "required": list(values),
                           "additionalProperties": False})


def instruction_schema() -> str:
    """The optimizer's reply schema (picaco.optimizer_schema): an object with one non-empty string
    `instruction`, as canonical JSON."""
    return canonical_json({"type": "object", "properties": {"instruction": {"type": "string", "minLength": 1}},
                           "required": ["instruction"], "additionalProperties": False})


def keys_from_prefix(prefix: "hashlib._Hash", start: int, n: int) -> list[str]:
    """The keys of samples start..start+n-1 from a request's `key_prefix`."""
    keys = []
    for i in range(start, start + n):
        h = prefix.copy()
        h.update(f"{i}}}".encode())
        keys.append(h.hexdigest())
    return keys


def sample_key(request: ChatRequest, endpoint: str, index: int) -> str:
    return request.sample_keys(endpoint, index, 1)[0]


def embedding_key(provider: str, model: str, endpoint: str, text: str) -> str:
    body = {"v": KEY_SCHEMA_VERSION, "kind": "embedding", "provider": provider, "model": model,
            "endpoint": endpoint, "text": text}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Sample(BaseModel):
    """One sampled completion. `usage` is this sample's share: the prompt counted on sample 0 of a call."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    text: str
    index: int
    finish_reason: str | None = None
    usage: Usage = Usage()
    cached: bool = False

    @property
    def filtered(self) -> bool:
        """Refused by a content filter: the text is empty and must be treated as missing."""
        return self.finish_reason == "content_filter"


class ChatResponse(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str
    role: Role
    samples: tuple[Sample, ...]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]

    @property
    def filtered(self) -> int:
        """How many samples a content filter refused."""
        return sum(1 for s in self.samples if s.filtered)

    @property
    def text(self) -> str:
        return self.samples[0].text
