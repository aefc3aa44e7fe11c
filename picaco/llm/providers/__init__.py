"""Registry of providers addressed by the part of "provider/model" before the slash.

SDKs are imported when a provider is first used, so that `import picaco` never imports openai,
google-genai or torch.
"""

from __future__ import annotations

import importlib

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.providers.base import Provider

# kind -> "module:Class" (imported on first use) or a Provider subclass
PROVIDER_KINDS: dict[str, "str | type[Provider]"] = {
    "openai": "picaco.llm.providers.openai:OpenAIProvider",
    "gemini": "picaco.llm.providers.gemini:GeminiProvider",
    "sim": "picaco.llm.providers.sim:SimProvider",
    "st": "picaco.llm.providers.st:SentenceTransformersProvider",
    "llamacpp": "picaco.llm.providers.llamacpp:LlamaCppProvider",
}

# Names users can write without configuring anything.
DEFAULT_SETTINGS: dict[str, ProviderSettings] = {
    "openai": ProviderSettings(kind="openai", base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY"),
    "gemini": ProviderSettings(kind="gemini", api_key_env="GEMINI_API_KEY"),
    "sim": ProviderSettings(kind="sim", max_concurrency=256),
    # The st provider coalesces concurrent calls into one encode, so let them all reach it.
    "st": ProviderSettings(kind="st", max_concurrency=4096),
    # Self-hosted OpenAI-compatible servers; point base_url at your own server in the config.
    "vllm": ProviderSettings(kind="openai", base_url="http://127.0.0.1:8000/v1", api_key_env="VLLM_API_KEY"),
    # Ollama ignores n: one sample per call
    "ollama": ProviderSettings(kind="openai", base_url="http://127.0.0.1:11434/v1", api_key_env="OLLAMA_API_KEY",
                               max_samples_per_call=1),
    # llama.cpp's server, started by the run on the embedded SmolLM2-135M (extra 'local'); see providers/llamacpp.py
    "llamacpp": ProviderSettings(kind="llamacpp"),
}


def register_kind(kind: str, target: "str | type[Provider]") -> None:
    """Add a provider implementation: `register_kind("mine", "my_pkg.mod:MyProvider")`."""
    PROVIDER_KINDS[kind] = target


def provider_class(name: str, overrides: dict[str, ProviderSettings] | None = None
                   ) -> tuple[type[Provider], ProviderSettings]:
    """The implementation and settings of provider `name`, without building it (no key is looked up)."""
    settings = (overrides or {}).get(name) or DEFAULT_SETTINGS.get(name)
    if settings is None:
        known = sorted(set(DEFAULT_SETTINGS) | set(overrides or {}))
        raise ConfigError(f"unknown provider {name!r}; known providers: {', '.join(known)} (or add one under 'providers' in the config)")
    kind = settings.kind or name
    target = PROVIDER_KINDS.get(kind)
    if target is None:
        raise ConfigError(f"provider {name!r} has unknown kind {kind!r}; known kinds: {', '.join(sorted(PROVIDER_KINDS))}")
    if isinstance(target, str):
        module_name, _, cls_name = target.partition(":")
        target = getattr(importlib.import_module(module_name), cls_name)
    return target, settings


def endpoint_for(name: str, overrides: dict[str, ProviderSettings] | None = None) -> str | None:
    """The endpoint identity of provider `name` from its settings alone (None: build it to know)."""
    cls, settings = provider_class(name, overrides)
    return cls.endpoint_for(name, settings)


def endpoint_identity(name: str, overrides: dict[str, ProviderSettings] | None = None) -> str:
    """The endpoint of provider `name`; only a provider that cannot tell from its settings is built."""
    endpoint = endpoint_for(name, overrides)
    return endpoint if endpoint is not None else make_provider(name, overrides).endpoint


def make_provider(name: str, overrides: dict[str, ProviderSettings] | None = None) -> Provider:
    cls, settings = provider_class(name, overrides)
    return cls(name, settings)
