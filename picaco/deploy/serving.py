"""`picaco serve` end to end: read the finished run, build the system prompt (the instruction, or the
Fig. 7 system prompt with demonstrations), resolve the target (starting a simulator server for a sim
target), bind 127.0.0.1:<port> and run the proxy with uvicorn, blocking (the command) or in a background
thread (tests, benchmarks)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

from picaco.base.errors import ConfigError
from picaco.deploy.proxy import ProxyApp
from picaco.deploy.run_record import FinishedRun, load_finished_run
from picaco.deploy.target import Target, resolve_target
from picaco.method.inputs import _sha  # the run store's own hash of the demonstrations
from picaco.sim.server import SimServerConfig, start_server_thread
from picaco.sim.serving import _http_impl as http_impl
from picaco.sim.serving import bind, start_in_thread, url_of
from picaco.templates.render import render_e_step
from picaco.values import load_composition

HOST = "127.0.0.1"


def system_prompt_of(run: FinishedRun, demonstrations: bool) -> str:
    """The instruction alone, or Fig. 7's system prompt: its header, the instruction and the first
    `demos_per_bucket` demonstrations of the run's composition (fixed, so every request gets the same)."""
    instruction = run.result.best_instruction
    if not demonstrations:
        return instruction
    comp = load_composition(run.config.composition)
    recorded = run.composition_record.get("demonstrations")
    if recorded != _sha(json.dumps([[d.query, d.answer] for d in comp.demonstrations]), 16):
        raise ConfigError(f"--demonstrations: the demonstrations of composition {run.config.composition!r} are not "
                          f"the ones run '{run.result.run_name}' was optimized with (their hash differs)")
    demos = comp.demonstrations[: run.config.picaco.demos_per_bucket]
    if not demos:
        raise ConfigError(f"--demonstrations: run '{run.result.run_name}' used no demonstrations (composition "
                          f"{run.config.composition!r} has {len(comp.demonstrations)}, picaco.demos_per_bucket is "
                          f"{run.config.picaco.demos_per_bucket})")
    return render_e_step(instruction, demos, "")[0]


def bind_port(port: int):
    try:
        sock = bind(HOST, port)
        # listening at once: a client that connects as soon as the URL is printed waits in the backlog
        # until uvicorn accepts, instead of being refused
        sock.listen(2048)
        return sock
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port}: {HOST}:{port} is already in use; choose another port "
                              "(--port 0 picks a free one)") from None
        raise ConfigError(f"--port {port}: cannot listen on {HOST}:{port} ({exc.strerror or exc})") from None


class Served:
    """A prepared `serve`: the proxy app on a bound socket, and the simulator server behind a sim target."""

    def __init__(self, runs_dir: str | Path, run_name: str, port: int = 8787, target: str | None = None,
                 demonstrations: bool = False, upstream: str = "fast", loop: str = "auto") -> None:
        self.run = load_finished_run(runs_dir, run_name)
        self.system_prompt = system_prompt_of(self.run, demonstrations)
        self.target: Target = resolve_target(self.run.config, target)
        self.sock = bind_port(port)
        self.url = url_of(HOST, self.sock.getsockname()[1])
        self.sim = None
        base_url = self.target.base_url
        try:
            if base_url is None:
                self.sim = start_server_thread(SimServerConfig(world=self.target.sim_world,
                                                               latency_ms=self.target.sim_latency_ms))
                base_url = self.sim.openai_base_url
            self.app = ProxyApp(self.system_prompt, self.target.model, base_url, api_key=self.target.api_key,
                                timeout_s=self.target.timeout_s, upstream=upstream)
            self.server = self._uvicorn(loop)
        except BaseException:
            self.close()
            raise

    def _uvicorn(self, loop: str):
        import uvicorn

        # loop "auto": uvloop (a dependency) where it installs, else asyncio's
        config = uvicorn.Config(self.app, host=HOST, log_level="warning", access_log=False, http=http_impl("auto"),
                                loop=loop, lifespan="on", timeout_graceful_shutdown=2, backlog=2048)
        return uvicorn.Server(config)

    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl-C, SIGTERM)."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.close()

    def close(self) -> None:
        self.sock.close()
        if self.sim is not None:
            self.sim.stop()
            self.sim = None


class ServeThread:
    """`serve` in a background thread of this process; a context manager."""

    def __init__(self, served: Served, start_timeout_s: float = 10.0) -> None:
        self.served = served
        self.url = served.url
        self.base_url = served.url + "/v1"
        self._thread = start_in_thread(served.serve_forever, lambda: served.server.started, "picaco-serve",
                                       f"picaco serve on {self.url}", start_timeout_s,
                                       lambda: setattr(served.server, "should_exit", True))

    def stop(self) -> None:
        self.served.server.should_exit = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError(f"picaco serve thread on {self.url} did not stop within 10s")

    def __enter__(self) -> "ServeThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
