"""`picaco sim-server` / `python -m picaco.sim.server`: flags, their one-line errors, and running the server.

Every flag mirrors a SimServerConfig field (the API key comes from the environment only, `--api-key-env`).
A bad flag, a port in use or an unwritable log path is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from picaco.base.errors import ConfigError
from picaco.sim.server_app import SimApp, install_drop_filter
from picaco.sim.server_config import SimServerConfig
from picaco.sim.serving import LISTENING, bind, url_of, uvicorn_config

DESCRIPTION = "A loopback HTTP server that speaks the OpenAI and Gemini APIs, answered by the simulator engine."

# config field -> (flag, argparse kwargs); api_key is replaced by --api-key-env (secrets only from env)
_FLAGS: dict[str, tuple[str, dict]] = {
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
    "echo_auth_in_errors": ("--echo-auth-in-errors", {"action": "store_true",
                                                      "help": "error bodies echo the request's credentials"}),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # argparse would print its whole usage block first; the user needs the one line that names the flag
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="picaco sim-server", description=DESCRIPTION)
    for field, (flag, kwargs) in _FLAGS.items():
        parser.add_argument(flag, dest=field, default=None, **kwargs)
    parser.add_argument("--api-key-env", default=None,
                        help="require the key held by this environment variable (401/403 otherwise)")
    return parser


def config_from_args(argv: list[str] | None = None) -> SimServerConfig:
    args = build_parser().parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None and k != "api_key_env"}
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise ConfigError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
        values["api_key"] = key
    return SimServerConfig(**values)


def config_to_argv(config: SimServerConfig) -> list[str]:
    """Flags reproducing `config` (without the API key, which travels through the environment)."""
    argv: list[str] = []
    defaults = SimServerConfig()
    for field, (flag, _) in _FLAGS.items():
        value = getattr(config, field)
        if value == getattr(defaults, field) or value is None:
            continue
        if value is True:  # a switch
            argv.append(flag)
            continue
        argv += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    return argv


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    try:
        config = config_from_args(argv)
        try:
            sock = bind(config.host, config.port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
        try:
            app = SimApp(config)
        except BaseException:
            sock.close()
            raise
    except SystemExit as exc:  # --help printed the flags
        return exc.code if isinstance(exc.code, int) else 0
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        flag = _FLAGS[field][0] if field in _FLAGS else field
        msg = err["msg"].removeprefix("Value error, ")
        print(f"error: {flag}: {msg}" if flag else f"error: {msg}", file=sys.stderr)  # no flag: a check of several
        return 2
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    install_drop_filter()
    url = url_of(config.host, sock.getsockname()[1])
    print(f"{LISTENING}{url}", flush=True)
    try:
        uvicorn.Server(uvicorn_config(app, config)).run(sockets=[sock])
    finally:
        app.close()
        sock.close()
    return 0
