"""llama.cpp's OpenAI-compatible server, managed by picaco or your own.

    providers:
      local: {kind: llamacpp, options: {gguf: smollm2, n_ctx: 4096}}     # managed: started on first use
      mine:  {kind: llamacpp, base_url: "http://127.0.0.1:8080/v1"}      # yours: picaco only talks to it

Without `base_url` the client starts the engine (`picaco.llm.local_engine`) the first time a call of
the run needs it (a run answered by the cache starts none) and stops it when the client closes. The cache
key's endpoint identity is then the model file's sha256 and the engine settings that change answers,
not the port, so a restarted engine hits the same entries; with `base_url` it is the URL, as for any
OpenAI-compatible server. `llamacpp/<anything>` with no configuration is the managed SmolLM2-135M.

Options: those of `local_engine.EngineSpec` (gguf, n_ctx, chat_format, logits_all, n_threads, host,
port, start_timeout_s) for a managed engine, and the openai kind's `max_tokens_param`. The server
ignores `n` (one sample per call: `max_samples_per_call` defaults to 1) and the model name. It answers
one request at a time, so a managed engine's defaults are 4 requests in flight and a 600 s timeout.
"""

from __future__ import annotations

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.errors import ProviderError
from picaco.llm.local_engine import EngineSpec, LocalEngine, endpoint_identity
from picaco.llm.providers.base import ChatCall, ChatReply
from picaco.llm.providers.openai import OpenAIProvider

_OPENAI_OPTIONS = ("max_tokens_param",)
_MANAGED_DEFAULTS = {"max_concurrency": 4, "timeout_s": 600.0}


def engine_spec(name: str, settings: ProviderSettings) -> EngineSpec | None:
    """The engine to manage for provider `name`; None when `base_url` names a server of your own."""
    if settings.base_url:
        return None
    return EngineSpec.from_options(dict(settings.options), f"provider {name!r}", ignore=_OPENAI_OPTIONS)


class LlamaCppProvider(OpenAIProvider):
    default_max_samples_per_call = 1

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        managed = engine_spec(name, settings) is not None
        if managed:
            unset = {k: v for k, v in _MANAGED_DEFAULTS.items() if k not in settings.model_fields_set}
            settings = settings.model_copy(update=unset)
        super().__init__(name, settings)
        self.engine: LocalEngine | None = None
        self._managed = managed
        if managed:
            self.base_url = ""  # until the client attaches the running engine

    @classmethod
    def endpoint_for(cls, name: str, settings: ProviderSettings) -> str:
        spec = engine_spec(name, settings)
        return (settings.base_url or "").rstrip("/") if spec is None else endpoint_identity(spec)

    @classmethod
    def start_engine(cls, name: str, settings: ProviderSettings) -> LocalEngine | None:
        """Start the managed engine (None for a server of your own); the client owns and stops it."""
        spec = engine_spec(name, settings)
        return None if spec is None else LocalEngine(spec, name=name).start()

    def attach(self, engine: LocalEngine | None) -> None:
        if engine is not None:
            self.engine, self.base_url = engine, engine.base_url or self.base_url

    async def generate(self, call: ChatCall) -> ChatReply:
        if self._managed and self.engine is None:
            raise ConfigError(f"provider {self.name!r}: the managed engine was not started (a bug: the client "
                              f"starts it before the first call)")
        try:
            return await super().generate(call)
        except ProviderError:
            if self.engine is not None and not self.engine.alive():
                raise self.engine.died_error() from None
            raise
