"""Serving the simulator app: in a background thread of this process, or as a separate process.

`start_server_thread` runs uvicorn in a daemon thread (the request log is read directly);
`start_server_process` runs `python -m picaco.sim.server` under picaco.procs (its own GIL, as in
benchmarks), learns the URL from the line it prints, and waits for /_sim/health.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from picaco import procs
from picaco.sim.server_app import SimApp, install_drop_filter
from picaco.sim.server_config import SimServerConfig
from picaco.sim.server_flags import config_to_argv

LISTENING = "picaco sim server listening on "  # the first line a server process prints


def _http_impl(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def uvicorn_config(app: SimApp, config: SimServerConfig):
    import uvicorn

    return uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                          http=_http_impl(config.http), lifespan="off", timeout_graceful_shutdown=2,
                          backlog=2048)


def bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and without
    # it the body write waits for the ACK of the header write (a 40 ms delayed-ACK stall per reply)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class RunningServer(ABC):
    """A started simulator server; use as a context manager or call `stop()`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.openai_base_url = url + "/v1"
        self.gemini_base_url = url  # google-genai appends /{version}/models/...

    def request_log(self) -> list[dict]:
        import httpx

        r = httpx.get(self.url + "/_sim/log", timeout=10)
        r.raise_for_status()
        return r.json()

    def reset_log(self) -> None:
        import httpx

        httpx.post(self.url + "/_sim/reset", timeout=10).raise_for_status()

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and release the port."""

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_in_thread(run: Callable[[], None], started: Callable[[], bool], name: str, what: str,
                    timeout_s: float, on_failure: Callable[[], None]) -> threading.Thread:
    """Run a server's loop (`run`) in a daemon thread and wait until `started()`; a loop that dies or does
    not start in time is cleaned up with `on_failure()` and raised as one error naming `what`."""
    error: list[BaseException] = []

    def guarded() -> None:
        try:
            run()
        except BaseException as exc:  # surfaced below, in the starting thread
            error.append(exc)

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not started():
        if not thread.is_alive() or time.monotonic() > deadline:
            on_failure()
            raise RuntimeError(f"{what} did not start: {error[0] if error else 'timed out'!r}")
        time.sleep(0.005)
    return thread


class ThreadServer(RunningServer):
    def __init__(self, config: SimServerConfig, start_timeout_s: float = 10.0) -> None:
        import uvicorn

        install_drop_filter()
        self.app = SimApp(config)
        self._sock = bind(config.host, config.port)
        port = self._sock.getsockname()[1]
        super().__init__(url_of(config.host, port))
        self._server = uvicorn.Server(uvicorn_config(self.app, config))
        self._thread = start_in_thread(lambda: self._server.run(sockets=[self._sock]), lambda: self._server.started,
                                       f"picaco-sim-server-{port}", f"sim server on {self.url}", start_timeout_s,
                                       self._release)

    def request_log(self) -> list[dict]:
        return self.app.request_log()

    def reset_log(self) -> None:
        self.app.reset_log()

    def _release(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # don't wait for hung requests
        self._sock.close()
        self.app.close()

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # don't wait for hung requests
        self._thread.join(timeout=10)
        self._release()
        if self._thread.is_alive():
            raise RuntimeError(f"sim server thread on {self.url} did not stop within 10s")


class ProcessServer(RunningServer):
    def __init__(self, config: SimServerConfig, start_timeout_s: float = 30.0) -> None:
        env = dict(os.environ)
        argv = [sys.executable, "-m", "picaco.sim.server", *config_to_argv(config)]
        if config.api_key is not None:
            # through the environment, never argv, so the key does not show in `ps`
            env["PICACO_SIM_API_KEY"] = config.api_key.get_secret_value()
            argv += ["--api-key-env", "PICACO_SIM_API_KEY"]
        self._sup = procs.start("sim server process", argv, env=env)
        self.proc = self._sup.proc
        try:
            url = procs.wait_ready(self._sup, self._listening_url, start_timeout_s)
            super().__init__(url)
            procs.wait_ready(self._sup, self._healthy, start_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _listening_url(self) -> str | None:
        # stdout and stderr share the log, so a warning printed at import may come before the URL line
        for line in self._sup.log_path.read_text(errors="replace").split("\n")[:-1]:  # complete lines only
            if line.startswith(LISTENING):
                return line[len(LISTENING):].strip()
        return None

    def _healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(self.url + "/_sim/health", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        try:
            procs.stop(self._sup, grace=5.0)
        finally:
            self._sup.log_path.unlink(missing_ok=True)


def start_server_thread(config: SimServerConfig | None = None) -> RunningServer:
    """Serve in a background thread of this process; `.request_log()` reads the log directly."""
    return ThreadServer(config or SimServerConfig())


def start_server_process(config: SimServerConfig | None = None) -> RunningServer:
    """Serve from a separate `python -m picaco.sim.server` process (its own GIL, as in benchmarks)."""
    return ProcessServer(config or SimServerConfig())
