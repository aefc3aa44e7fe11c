"""A local Prefect server and process worker, started and stopped by the project itself.

    .venv/bin/python ops/prefect_local.py serve            # server on 127.0.0.1:4200, pool, deployments, worker
    .venv/bin/python ops/prefect_local.py serve --port 4300 --home /tmp/ph --no-deploy
    .venv/bin/python ops/prefect_local.py serve --db sqlite          # the server's database: SQLite in --home
    PICACO_PREFECT_DB_URL=postgresql://u:pw@db:5432/prefect .venv/bin/python ops/prefect_local.py serve

The server's database is Postgres by default: the one PICACO_PREFECT_DB_URL (or --db-url) names, else a
local one kept in <home>/postgres (picaco/llm/pg_local.py, started and stopped with the server).

`serve` runs in the foreground until Ctrl-C (or SIGTERM), then stops the worker and the server and checks
that none of their processes is left. The same functions start the private server of the deployment check
(ops/deployment_check.py, tests/ops/): a free loopback port, its own PREFECT_HOME and SQLite file.

Every process is started and stopped by picaco.procs: in its own session, so it and its children (the
worker's flow-run processes, a flow run's Dask workers) can be found and stopped together; a worker does
not always stop on the first signal, so stopping escalates to SIGKILL and then verifies that each PID is gone.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

if __package__ in (None, ""):  # run as a script: ops/ is beside the package, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ops.prefect_db import DB_URL_ENV, check_reachable, database_ready, is_postgres, server_db_url  # noqa: E402
from picaco import procs  # noqa: E402
from picaco.base.errors import PicacoError  # noqa: E402
from picaco.llm.cache_pg import redact_url  # noqa: E402
from picaco.llm.pg_local import LocalPostgres  # noqa: E402

# OpsError: a local server or worker could not be started, reached or stopped. It is the supervisor's own
# error, so that a failed start or stop and a failed API call are caught alike.
from picaco.procs import ProcessError as OpsError
from picaco.procs import Supervised as Managed
from picaco.procs import still_running, stop  # noqa: F401 (still_running: for deployment_check and tests)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POOL = "picaco-process"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HEARTBEAT_S = 30
ZOMBIE_WITHIN_S = 3 * HEARTBEAT_S  # silence after a heartbeat that marks a flow run Crashed
ZOMBIE_AUTOMATION = "picaco: crash flow runs that stopped sending heartbeats"


def zombie_automation(within_s: float = ZOMBIE_WITHIN_S) -> dict:
    """Prefect's documented zombie-run automation (docs: "detect zombie flows"): a flow run that sent a
    heartbeat and then, for `within_s`, neither another heartbeat nor a final state, is set Crashed.
    Without it a run whose worker was killed stays Running in the UI forever; a resumed run does not need
    it (picaco resumes from its own files), but a user watching the UI does."""
    return {
        "name": ZOMBIE_AUTOMATION,
        "description": "Marks a flow run Crashed when its process stops sending heartbeats (worker or machine died).",
        "enabled": True,
        "trigger": {
            "type": "event",
            "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
            "after": ["prefect.flow-run.heartbeat"],
            "expect": ["prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                       "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"],
            "for_each": ["prefect.resource.id"],
            "posture": "Proactive",
            "threshold": 1,
            "within": within_s,
        },
        "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
                     "message": f"no heartbeat for {within_s:.0f} s: the flow run's process is gone "
                                f"(worker killed or machine lost); run the deployment again to resume"}],
    }


def ensure_zombie_automation(env: Mapping[str, str], within_s: float = ZOMBIE_WITHIN_S) -> str:
    """Create the zombie-run automation unless one of that name exists; its id."""
    api = env["PREFECT_API_URL"]
    r = httpx.post(f"{api}/automations/filter", json={"automations": {"name": {"any_": [ZOMBIE_AUTOMATION]}}},
                   timeout=30)
    if r.status_code != 200:
        raise OpsError(f"reading automations answered {r.status_code}: {r.text[:200]}")
    if r.json():
        return r.json()[0]["id"]
    r = httpx.post(f"{api}/automations/", json=zombie_automation(within_s), timeout=30)
    if r.status_code != 201:
        raise OpsError(f"creating the zombie-run automation answered {r.status_code}: {r.text[:300]}")
    return r.json()["id"]


def prefect_env(home: Path, port: int, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of every process talking to the local server (server, CLI, worker, flow runs)."""
    home = Path(home).resolve()
    env = dict(os.environ if base is None else base)
    # A profile's PREFECT_API_URL or an outer test harness must not leak into this server's processes.
    for key in [k for k in env if k.startswith("PREFECT_")]:
        del env[key]
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_PROFILES_PATH": str(home / "profiles.toml"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        # Offline: telemetry would only log errors (and once raised `database is locked`).
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        # Heartbeats every 30 s (Prefect's minimum; default 180) drive the zombie-run automation below.
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        # A worker polls every 10 s by default; 2 s keeps a local run from waiting idle.
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "10",
        "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
        "HF_DATASETS_OFFLINE": env.get("HF_DATASETS_OFFLINE", "1"),
        "PYTHONUNBUFFERED": "1",
    })
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _prefect_cmd(*args: str) -> list[str]:
    return [str(VENV_BIN / "prefect"), *args]


def run_cli(env: Mapping[str, str], *args: str, cwd: Path = REPO_ROOT, timeout: float = 300) -> str:
    """Run a `prefect` CLI command; raise OpsError with its output when it fails."""
    proc = subprocess.run(_prefect_cmd(*args), env=dict(env), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise OpsError(f"`prefect {' '.join(args)}` exited with {proc.returncode}:\n" + "\n".join(tail))
    return proc.stdout


def start_process(name: str, cmd: list[str], env: Mapping[str, str], log_path: Path,
                  cwd: Path = REPO_ROOT) -> Managed:
    return procs.start(name, cmd, env=env, cwd=cwd, log_path=log_path)


def start_server(env: Mapping[str, str], log_path: Path, timeout: float = 180) -> Managed:
    check_reachable(env["PREFECT_SERVER_DATABASE_CONNECTION_URL"])
    port = env["PREFECT_SERVER_API_PORT"]
    server = start_process("prefect server", _prefect_cmd("server", "start", "--host", "127.0.0.1", "--port", port,
                                                         "--no-ui" if env.get("PICACO_NO_UI") else "--ui"),
                           env, log_path)
    try:
        procs.wait_ready(server, lambda: _healthy(env["PREFECT_API_URL"]), timeout, interval=0.5)
    except BaseException:
        stop(server)
        raise
    return server


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def ensure_pool(env: Mapping[str, str], pool: str = DEFAULT_POOL) -> None:
    r = httpx.get(f"{env['PREFECT_API_URL']}/work_pools/{pool}", timeout=10)
    if r.status_code == 404:
        run_cli(env, "--no-prompt", "work-pool", "create", pool, "--type", "process")
    elif r.status_code != 200:
        raise OpsError(f"reading work pool {pool!r} answered {r.status_code}: {r.text[:200]}")


def deploy_all(env: Mapping[str, str], cwd: Path = REPO_ROOT) -> str:
    """`prefect deploy --all` from the project root: every deployment of prefect.yaml."""
    return run_cli(env, "--no-prompt", "deploy", "--all", cwd=cwd)


def start_worker(env: Mapping[str, str], log_path: Path, pool: str = DEFAULT_POOL, cwd: Path = REPO_ROOT,
                 timeout: float = 90) -> Managed:
    worker = start_process("prefect worker", _prefect_cmd("worker", "start", "--pool", pool, "--type", "process"),
                           env, log_path, cwd=cwd)
    url = f"{env['PREFECT_API_URL']}/work_pools/{pool}/workers/filter"

    def online() -> bool:
        try:
            r = httpx.post(url, json={}, timeout=5)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and any(w.get("status") == "ONLINE" for w in r.json())

    try:
        procs.wait_ready(worker, online, timeout, interval=0.5)
    except BaseException:
        stop(worker)
        raise
    return worker


@dataclass
class LocalPrefect:
    """A server + pool + worker for one PREFECT_HOME; use as a context manager, which stops them all."""

    home: Path
    port: int = 0
    pool: str = DEFAULT_POOL
    cwd: Path = REPO_ROOT
    extra_env: dict[str, str] = field(default_factory=dict)
    db_url: str | None = None  # the server's database; None: SQLite in home
    server: Managed | None = None
    worker: Managed | None = None
    stopped_pids: list[int] = field(default_factory=list)
    processes: dict[int, psutil.Process] = field(default_factory=dict)  # every process seen, for checks

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.env = prefect_env(self.home, self.port, **self.extra_env)
        # Only the server gets a Postgres URL (it may carry the password); everything else talks to the API.
        self.server_env = dict(self.env)
        if self.db_url:
            self.db_url = server_db_url(self.db_url)
            self.server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.db_url
            del self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"]

    @property
    def database(self) -> str:
        """The server's database, password hidden."""
        url = self.server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
        return redact_url(url) if is_postgres(url) else url

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_server(self) -> None:
        self.server = start_server(self.server_env, self.home / "server.log")
        self.server.tree()

    def prepare(self) -> None:
        """What every deployment here needs on the server: the work pool and the zombie-run automation."""
        ensure_pool(self.env, self.pool)
        ensure_zombie_automation(self.env)

    def deploy(self) -> str:
        self.prepare()
        return deploy_all(self.env, self.cwd)

    def start_worker(self) -> None:
        self.worker = start_worker(self.env, self.home / "worker.log", self.pool, self.cwd)
        self.worker.tree()

    def _stop(self, name: str, hard: bool = False) -> list[int]:
        m = getattr(self, name)
        if m is None:
            return []
        setattr(self, name, None)
        try:
            pids = stop(m, hard=hard)
        finally:
            self.processes.update(m.known)
        self.stopped_pids += pids
        return pids

    def kill_worker(self) -> list[int]:
        """Crash the worker: SIGKILL it and its flow-run processes at once (no clean shutdown)."""
        return self._stop("worker", hard=True)

    def stop_worker(self) -> list[int]:
        return self._stop("worker")

    def close(self) -> list[int]:
        errors = []
        for name in ("worker", "server"):
            try:
                self._stop(name)
            except OpsError as exc:
                errors.append(str(exc))
        if errors:
            raise OpsError("; ".join(errors))
        return self.stopped_pids

    def __enter__(self) -> LocalPrefect:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(home: Path, port: int, pool: str, deploy: bool, db: str = "postgres", db_url: str | None = None) -> int:
    home = Path(home).resolve()
    local_pg = None
    if db == "postgres" and not db_url:
        local_pg = LocalPostgres(root=home / "postgres")
        print(f"starting the local Postgres for the Prefect server ({local_pg.root}) ...", flush=True)
        local_pg.__enter__()
        db_url = local_pg.url
    try:
        return _serve(LocalPrefect(home=home, port=port, pool=pool, db_url=db_url if db == "postgres" else None),
                      deploy)
    finally:
        if local_pg is not None:
            local_pg.cleanup()


def _serve(lp: LocalPrefect, deploy: bool) -> int:
    stop_requested = False
    db_up = True

    def on_term(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        print(f"starting prefect server on {lp.ui_url} (PREFECT_HOME={lp.home}, database {lp.database}) ...",
              flush=True)
        lp.start_server()
        if deploy:
            print("deploying prefect.yaml ...", flush=True)
            lp.deploy()
        else:
            lp.prepare()
        lp.start_worker()
        print(f"UI: {lp.ui_url}   API: {lp.api_url}   pool: {lp.pool}\n"
              f"logs: {lp.home}/server.log, {lp.home}/worker.log\n"
              f"in another shell: export PREFECT_API_URL={lp.api_url}\n"
              f"  .venv/bin/prefect deployment run 'picaco-pipeline/pipeline-demo'\n"
              f"Ctrl-C stops the worker and the server.", flush=True)
        last_check = time.monotonic()
        while not stop_requested:
            for m in (lp.server, lp.worker):
                if m is not None and m.proc.poll() is not None:
                    print(f"{m.name} exited with {m.proc.returncode}:\n{m.log_tail()}", file=sys.stderr)
                    return 1
            if time.monotonic() - last_check >= DB_CHECK_S:
                last_check = time.monotonic()
                db_up = report_database(lp, db_up)
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        pids = lp.close()
        print(f"stopped; processes gone: {pids}", flush=True)
    return 0


DB_CHECK_S = 10


def report_database(lp: LocalPrefect, was_up: bool) -> bool:
    """One line when the server loses its database and one when it is back: flow runs fail while it is
    gone (their task and flow states cannot be recorded), and are resumed by running them again."""
    up = database_ready(lp.api_url)
    if up is False and was_up:
        print(f"error: the Prefect server cannot reach its database {lp.database}: flow runs fail until it is "
              f"back; then run them again to resume", file=sys.stderr, flush=True)
    elif up and not was_up:
        print(f"the Prefect server reaches its database {lp.database} again: run failed or crashed flow runs "
              f"again to resume them", flush=True)
    return was_up if up is None else up


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="server + work pool + deployments + worker, until Ctrl-C")
    s.add_argument("--port", type=int, default=4200)
    s.add_argument("--home", type=Path, default=REPO_ROOT / "artifacts" / "prefect")
    s.add_argument("--pool", default=DEFAULT_POOL)
    s.add_argument("--no-deploy", action="store_true", help="do not run `prefect deploy --all`")
    s.add_argument("--db", choices=("postgres", "sqlite"), default="postgres",
                   help="the server's database: Postgres (default; --db-url, else $PICACO_PREFECT_DB_URL, else a "
                        "local one in <home>/postgres) or SQLite in <home>")
    s.add_argument("--db-url", default=os.environ.get(DB_URL_ENV) or None,
                   help=f"a Postgres for the server's database (default: ${DB_URL_ENV})")
    args = ap.parse_args(argv)
    try:
        return serve(args.home, args.port, args.pool, not args.no_deploy, args.db, args.db_url)
    except (OpsError, PicacoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
