"""The simulator as an in-process provider: the same engine `picaco sim-server` serves over HTTP.

`sim/<anything>` models share one engine per world; options (in the provider settings):
`world` (default "echo"; "values" is the simulated value world), `latency_ms` (sleep per call, to
exercise concurrency offline).
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from picaco.llm.errors import ContextTooLong
from picaco.llm.providers.base import ChatCall, ChatReply, Completion, EmbedReply, Provider, ProviderSettings
from picaco.sim.engine import SimEngine, count_tokens

_ENGINES: dict[str, SimEngine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(world: str) -> SimEngine:
    with _ENGINES_LOCK:
        engine = _ENGINES.get(world)
        if engine is None:
            from picaco.sim.engine import make_world

            engine = _ENGINES[world] = SimEngine(make_world(world))
        return engine


class SimProvider(Provider):
    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self.world = str(settings.options.get("world", "echo"))
        self.latency_s = float(settings.options.get("latency_ms", 0)) / 1000.0
        self.max_context_tokens = int(settings.options.get("max_context_tokens", 0))
        self.endpoint = f"sim-inproc:{self.world}"
        self._engine = engine_for(self.world)

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
                                  max_tokens=call.params.max_tokens)
        return ChatReply(completions=[Completion(t, r) for t, r in zip(reply.texts, reply.finish_reasons)],
                         prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)

    async def embed(self, model: str, texts: list[str]) -> EmbedReply:
        vectors = self._engine.embed(model, texts)
        return EmbedReply(vectors=np.asarray(vectors, dtype=np.float32), tokens=sum(count_tokens(t) for t in texts))
