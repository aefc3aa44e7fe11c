"""`picaco sim-server` / `python -m picaco.sim.server`: flags, their one-line errors, and running the server.

Every flag mirrors a SimServerConfig field (the API key comes from the environment only, `--api-key-env`).
A bad flag, a port in use or an unwritable log path is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError

from picaco.base.errors import ConfigError
from picaco.sim.server_app import SimApp, install_drop_filter
from picaco.sim.server_config import SimServerConfig
from picaco.sim.server_flags import FLAGS
from picaco.sim.serving import LISTENING, bind, url_of, uvicorn_config

DESCRIPTION = "A loopback HTTP server that speaks the OpenAI and Gemini APIs, answered by the simulator engine."

# config field -> (flag, argparse kwargs); api_key is replaced by --api-key-env (secrets only from env)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # argparse would print its whole usage block first; the user needs the one line that names the flag
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="picaco sim-server", description=DESCRIPTION)
    for field, (flag, kwargs) in FLAGS.items():
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
        flag = FLAGS[field][0] if field in FLAGS else field
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
