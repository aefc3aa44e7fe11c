"""A Dask cluster whose workers behave like separate hosts: the pipeline's E-step shards and M-step spread
over them, sharing nothing on disk but the run store, and only the Postgres cache.

    with SeparateHosts(work, n_workers=3, cache_url=pg_url) as hosts:
        optimize_steps_flow.with_options(task_runner=DaskTaskRunner(address=hosts.address))(config=raw, ...)
        hosts.report()      # per worker: its cwd, HOME, private cache dir (still empty), tasks it ran

Each worker is its own `dask worker` process (one thread), started with a working directory, HOME,
XDG cache/config dirs, TMPDIR, PREFECT_HOME and PICACO_CACHE_DIR of its own (empty folders under
`work/host-<i>/`), and an environment built from scratch: nothing of the caller's environment but PATH and
the BLAS settings (OPENBLAS_*, MKL_*, OMP_*: what hosts from one image share), so no PICACO_*/PREFECT_*
setting and no cache folder leaks from the caller. `PICACO_CACHE_URL` (the shared
Postgres cache, password included) is the one thing they share besides the run store, which the run config
names by an absolute path (on real hosts: a ReadWriteMany volume, docs/operations.md). The Prefect API URL
reaches the tasks in their serialized context (prefect-dask), not through the environment.

What this does not simulate: separate kernels and networks (the workers reach Postgres and the scheduler
on 127.0.0.1) and separate installs (they share the virtualenv, as pods share an image).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cloudpickle
from distributed import Client

from picaco import procs

VENV_BIN = Path(sys.executable).parent
_BLAS_PREFIXES = ("OPENBLAS_", "MKL_", "OMP_", "NVPL_")


def _isolated_env(root: Path, extra: dict[str, str]) -> dict[str, str]:
    home = root / "home"
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "TMPDIR": str(root / "tmp"),
        "PREFECT_HOME": str(root / "prefect"),
        "PICACO_CACHE_DIR": str(root / "cache"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    # Hosts built from one image on one CPU type share how their BLAS computes: without the caller's
    # OPENBLAS_CORETYPE (set on these machines) OpenBLAS picks another kernel and the floats of the noisy
    # pool's p and TC_e move in the 8th digit (measured: instructions the same, TC_e off by 4e-8 relative).
    env.update({k: v for k, v in os.environ.items() if k.startswith(_BLAS_PREFIXES)})
    for d in (root / "cwd", home / ".cache", home / ".config", root / "tmp", root / "prefect", root / "cache"):
        d.mkdir(parents=True, exist_ok=True)
    env.update(extra)
    return env


def _inspect(dask_worker) -> dict:
    """Runs on each worker (Client.run): where it works, and that its private cache dir stayed empty."""
    cache = Path(os.environ["PICACO_CACHE_DIR"])
    return {"name": dask_worker.name, "pid": os.getpid(), "cwd": os.getcwd(), "home": os.environ["HOME"],
            "cache_dir": str(cache), "cache_dir_files": sorted(p.name for p in cache.rglob("*")),
            "cwd_files": sorted(p.name for p in Path.cwd().rglob("*")),
            "cache_url_set": bool(os.environ.get("PICACO_CACHE_URL")),
            "tasks_run": dask_worker.state.executed_count}


class SeparateHosts:
    """A scheduler and `n_workers` isolated worker processes under `work` (see the module docstring)."""

    def __init__(self, work: Path, n_workers: int = 3, *, cache_url: str, extra_env: dict[str, str] | None = None,
                 port: int = 0, timeout: float = 180) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.work = Path(work).resolve()
        self.n_workers, self.port, self.timeout = n_workers, port, timeout
        self.extra = {"PICACO_CACHE_URL": cache_url, **(extra_env or {})}
        self.scheduler: procs.Supervised | None = None
        self.workers: list[procs.Supervised] = []
        self.address = ""

    def start(self) -> SeparateHosts:
        root = self.work / "scheduler"
        env = _isolated_env(root, {})
        sched_file = root / "scheduler.json"
        self.scheduler = procs.start("dask scheduler", [str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1",
                                                        "--port", str(self.port), "--no-dashboard",
                                                        "--scheduler-file", str(sched_file)],
                                     env=env, cwd=root / "cwd", log_path=root / "scheduler.log")
        procs.wait_ready(self.scheduler, sched_file.exists, self.timeout, interval=0.2)
        self.address = json.loads(sched_file.read_text())["address"]
        for i in range(self.n_workers):
            host = self.work / f"host-{i}"
            env = _isolated_env(host, self.extra)
            self.workers.append(procs.start(
                f"dask worker host-{i}",
                [str(VENV_BIN / "dask"), "worker", self.address, "--name", f"host-{i}", "--nworkers", "1",
                 "--nthreads", "1", "--no-dashboard", "--local-directory", str(host / "tmp")],
                env=env, cwd=host / "cwd", log_path=host / "worker.log"))
        deadline = time.monotonic() + self.timeout
        with Client(self.address, timeout=self.timeout) as client:
            while len(client.scheduler_info(n_workers=-1)["workers"]) < self.n_workers:
                for w in self.workers:
                    if w.proc.poll() is not None:
                        raise procs.ProcessError(f"{w.name} exited with {w.proc.returncode}:\n{w.log_tail()}")
                if time.monotonic() > deadline:
                    raise procs.ProcessError(f"{self.n_workers} Dask workers not connected within {self.timeout:.0f} s")
                time.sleep(0.2)
        return self

    def report(self) -> list[dict]:
        """Per worker: name, pid, cwd, HOME, private cache dir and its files (expected none), tasks run."""
        # ops/ is not installed on the workers (and their cwd is not the project): send _inspect by value
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        try:
            with Client(self.address, timeout=30) as client:
                return sorted(client.run(_inspect).values(), key=lambda r: r["name"])
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])

    def stop(self) -> list[int]:
        pids: list[int] = []
        errors = []
        for m in [*self.workers, self.scheduler]:
            if m is None:
                continue
            try:
                pids += procs.stop(m)
            except procs.ProcessError as exc:
                errors.append(str(exc))
        self.workers, self.scheduler = [], None
        if errors:
            raise procs.ProcessError("; ".join(errors))
        return pids

    def __enter__(self) -> SeparateHosts:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def duplicate_paid_calls(lines: list[dict]) -> int:
    """Provider calls paid for something another call had already paid for: a chat sample (request, index)
    or an embedded text, from call logs (`kind: call` lines, picaco/llm/calllog.py)."""
    seen: set = set()
    dup = 0
    for line in lines:
        if line.get("kind") != "call":
            continue
        if line.get("op") == "chat" and "request" in line:
            first, n = int(line.get("first", 0)), int(line.get("n", 0))
            items = {(line["request"], i) for i in range(first, first + n)}
        else:
            items = {(line.get("op"), line.get("key"))}
        dup += bool(items & seen)
        seen |= items
    return dup


def run_states(run_dir: Path) -> dict[str, object]:
    """What a run computed, comparable across runs: every iteration's state without its calls by role (how
    the work was split between processes, not what it returned), and the result."""
    out: dict[str, object] = {}
    for path in sorted(Path(run_dir).glob("iter_[0-9][0-9][0-9].json")):
        state = json.loads(path.read_text())
        state.pop("usage_by_role", None)
        out[path.name] = state
    result = Path(run_dir) / "result.json"
    out["result.json"] = json.loads(result.read_text()) if result.exists() else None
    return out
