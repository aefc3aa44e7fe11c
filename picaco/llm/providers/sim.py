"""The simulator as an in-process provider: the same engine `picaco sim-server` serves over HTTP.

`sim/<anything>` models share one engine per world; options (in the provider settings):
`world` (default "echo"; "values" is the simulated value world, "values-null" its null optimizer),
`world_<field>` overrides a WorldConfig field (e.g. `world_malformed_rate: 0.05`), `latency_ms` (sleep
per call, to exercise concurrency offline), `max_context_tokens`.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from picaco.base.config import ProviderSettings
from picaco.llm.errors import ContextTooLong
from picaco.llm.providers.base import ChatCall, ChatReply, Completion, EmbedReply, Provider
from picaco.sim.engine import SimEngine, count_tokens
from picaco.sim.worlds import make_world

_ENGINES: dict[tuple, SimEngine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(world: str, overrides: dict | None = None) -> SimEngine:
    """One engine per (world, overrides), shared by every provider instance that names them."""
    key = (world, tuple(sorted((overrides or {}).items())))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = SimEngine(make_world(world, overrides))
        return engine


def _world_overrides(settings: ProviderSettings) -> dict:
    return {k[len("world_"):]: v for k, v in settings.options.items() if k.startswith("world_")}


class SimProvider(Provider):
    default_max_samples_per_call = 4096  # the engine draws any number in one call
    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self.world = str(settings.options.get("world", "echo"))
        self.latency_s = float(settings.options.get("latency_ms", 0)) / 1000.0
        self.max_context_tokens = int(settings.options.get("max_context_tokens", 0))
        self._engine = engine_for(self.world, _world_overrides(settings))

    @classmethod
    def endpoint_for(cls, name: str, settings: ProviderSettings) -> str:
        # the world (and its overrides) decides every answer, so it is part of the endpoint identity
        world = str(settings.options.get("world", "echo"))
        return f"sim-inproc:{world}" + "".join(f";{k}={v}" for k, v in sorted(_world_overrides(settings).items()))

    async def generate(self, call: ChatCall) -> ChatReply:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        messages = [{"role": m.role, "content": m.content} for m in call.messages]
        if self.max_context_tokens:
            prompt_tokens = sum(count_tokens(m["content"]) for m in messages)
            if prompt_tokens > self.max_context_tokens:
                raise ContextTooLong(f"prompt has {prompt_tokens} tokens, the context holds {self.max_context_tokens}",
                                     provider=self.name, status=400)
        seed = call.seed if call.seed is not None else call.first_index
        reply = self._engine.chat(call.model, messages, n=call.n, seed=seed, temperature=call.params.temperature,
                                  max_tokens=call.params.max_tokens, response_schema=call.params.schema_dict())
        return ChatReply(completions=[Completion(t, r) for t, r in zip(reply.texts, reply.finish_reasons)],
                         prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)

    async def embed(self, model: str, texts: list[str]) -> EmbedReply:
        vectors = self._engine.embed(model, texts)
        return EmbedReply(vectors=np.asarray(vectors, dtype=np.float32), tokens=sum(count_tokens(t) for t in texts))
