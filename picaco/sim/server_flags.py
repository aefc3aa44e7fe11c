"""The sim server's command-line flags, field by field of SimServerConfig, and the argv that reproduces a
config (how a server process is started). Apart from the CLI so that serving can use it without a cycle."""

from __future__ import annotations

from pathlib import Path

from picaco.sim.server_config import SimServerConfig

FLAGS: dict[str, tuple[str, dict]] = {
    "host": ("--host", {"help": "interface to bind (default 127.0.0.1)"}),
    "port": ("--port", {"type": int, "help": "port (0: a free one; the URL is printed on stdout)"}),
    "world": ("--world", {"help": "the engine's world (default echo)"}),
    "seed": ("--seed", {"type": int, "help": "seed of latency jitter and fault draws"}),
    "latency_ms": ("--latency-ms", {"type": float, "help": "fixed latency added to every answer"}),
    "jitter_ms": ("--jitter-ms", {"type": float, "help": "extra uniform latency in [0, J] ms"}),
    "rate_429": ("--rate-429", {"type": float, "help": "share of requests answered 429"}),
    "retry_after_s": ("--retry-after-s", {"type": float, "help": "Retry-After sent with 429s (may be fractional)"}),
    "rate_500": ("--rate-500", {"type": float, "help": "share of requests answered 500"}),
    "rate_hang": ("--rate-hang", {"type": float, "help": "share of requests that hang"}),
    "hang_s": ("--hang-s", {"type": float, "help": "how long a hang lasts"}),
    "hang_then": ("--hang-then", {"choices": ["answer", "drop"], "help": "after a hang: answer or drop"}),
    "rate_truncated": ("--rate-truncated", {"type": float, "help": "share of 200s with a body cut mid-way"}),
    "rate_malformed": ("--rate-malformed", {"type": float, "help": "share of 200s with non-API JSON"}),
    "rate_filtered": ("--rate-filtered", {"type": float, "help": "share of 200s refused by a content filter"}),
    "max_context_tokens": ("--max-context-tokens", {"type": int, "help": "prompts longer than this get a 400"}),
    "models": ("--models", {"nargs": "+", "help": "known model names (others get 404); default: any"}),
    "log_path": ("--log-path", {"type": Path, "help": "append every request to this JSONL file"}),
    "log_max_entries": ("--log-max-entries", {"type": int, "help": "bound of the in-memory request log"}),
    "embed_dim": ("--embed-dim", {"type": int, "help": "embedding dimension"}),
    "http": ("--http", {"choices": ["auto", "h11", "httptools"], "help": "uvicorn HTTP implementation"}),
    "max_body_mb": ("--max-body-mb", {"type": float, "help": "largest request body in MiB (default 8); "
                                                             "larger ones get 413 before they are read"}),
    "max_choices": ("--max-choices", {"type": int, "help": "answer at most this many choices per request, "
                                                           "whatever n asks (llama.cpp, Ollama: 1)"}),
    "echo_auth_in_errors": ("--echo-auth-in-errors", {"action": "store_true",
                                                      "help": "error bodies echo the request's credentials"}),
}


def config_to_argv(config: SimServerConfig) -> list[str]:
    """Flags reproducing `config` (without the API key, which travels through the environment)."""
    argv: list[str] = []
    defaults = SimServerConfig()
    for field, (flag, _) in FLAGS.items():
        value = getattr(config, field)
        if value == getattr(defaults, field) or value is None:
            continue
        if value is True:  # a switch
            argv.append(flag)
            continue
        argv += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    return argv
