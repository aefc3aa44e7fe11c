"""Where `picaco serve` forwards: an OpenAI-compatible base_url, the model name to send and the server's
own key, from the run's target model and provider settings, or from --target.

--target is a "provider/model" string (resolved against the run's `client.providers` and the built-in
providers) or a path to a YAML run config, whose `models.target` and `client.providers` are used.
Providers of kind `openai` (openai, vllm, ollama, your own) are forwarded to as they are; a `sim`
target is answered by a simulator HTTP server that `serve` starts beside itself, with the provider's
world. The key is looked up the way the openai provider does (its `api_key_env`, required by the
hosted API) and lives in this process only: it is never printed, logged or returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from picaco.base.config import ProviderSettings, RunConfig
from picaco.base.errors import ConfigError
from picaco.config import load_run_config
from picaco.llm.providers import make_provider, provider_class
from picaco.llm.providers.base import NO_KEY
from picaco.llm.providers.openai import OpenAIProvider
from picaco.llm.request import split_model


@dataclass(frozen=True)
class Target:
    label: str  # "provider/model", for messages
    model: str  # the model name the target is asked for
    base_url: str | None  # None: a sim target, served by a simulator server started with `sim_world`
    timeout_s: float = 60.0
    sim_world: str | None = None
    sim_latency_ms: float = 0.0
    api_key: str | None = field(default=None, repr=False)


def _from_config_file(path: Path) -> tuple[str, dict[str, ProviderSettings]]:
    raw_name = {"run_name": "serve-target"}  # a target config need not name a run
    try:
        cfg: RunConfig = load_run_config(path, **raw_name)
    except ConfigError as exc:
        raise ConfigError(f"--target {path}: {exc}") from None
    return cfg.models.target, cfg.client.providers


def resolve_target(run_config: RunConfig, spec: str | None) -> Target:
    """The target of `serve`: the run's own by default, else --target (a model string or a config path)."""
    if spec is None:
        model, providers, where = run_config.models.target, run_config.client.providers, "the run's models.target"
    elif spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        if not Path(spec).is_file():
            raise ConfigError(f"--target {spec}: no such config file")
        (model, providers), where = _from_config_file(Path(spec)), f"--target {spec}"
    else:
        model, providers, where = spec, run_config.client.providers, "--target"
    try:
        provider, name = split_model(model)
        _, settings = provider_class(provider, providers)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    kind = settings.kind or provider
    if kind == "sim":
        overrides = sorted(k for k in settings.options if k.startswith("world_"))
        if overrides:
            raise ConfigError(f"{where}: sim provider {provider!r} sets {', '.join(overrides)}, which the simulator "
                              "HTTP server cannot apply; serve a sim target without world_* options")
        return Target(label=model, model=name, base_url=None, sim_world=str(settings.options.get("world", "echo")),
                      sim_latency_ms=float(settings.options.get("latency_ms", 0)), timeout_s=settings.timeout_s)
    if kind != "openai":
        raise ConfigError(f"{where}: {model} is served by provider kind {kind!r}, which has no OpenAI-compatible "
                          "endpoint to forward to; pass --target with an OpenAI-compatible provider (openai, vllm, "
                          "ollama, or one of kind openai under client.providers)")
    try:
        # the openai provider decides the endpoint and the key (which variable, whether it is required)
        built = make_provider(provider, providers)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not isinstance(built, OpenAIProvider):
        raise ConfigError(f"{where}: provider {provider!r} of kind openai is not the OpenAI-compatible provider")
    key = built._api_key  # noqa: SLF001 -- the provider's own key lookup, not repeated here
    return Target(label=model, model=name, base_url=built.base_url, timeout_s=settings.timeout_s,
                  api_key=None if key == NO_KEY else key)
