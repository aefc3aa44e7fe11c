"""A small process supervisor: start a command, wait until it is ready, stop its whole tree, check it is gone.

Used by the simulator server's process mode (picaco.sim.serving) and by ops/ (the local Prefect server
and worker); a local LLM engine manager can use it the same way. No Prefect import.

    from picaco import procs

    p = procs.start("sim server", [sys.executable, "-m", "picaco.sim.server"], log_path=log)
    try:
        url = procs.wait_ready(p, lambda: read_url(p.log_path), timeout=30)  # a check: truthy when ready
    except procs.ProcessError:                                             # exited, or not ready in time
        procs.stop(p)
        raise
    ...
    pids = procs.stop(p)     # SIGTERM the tree, SIGKILL what is left after `grace`, verify every PID gone

API
  start(name, cmd, *, env=None, cwd=None, log_path=None) -> Supervised
      Popen `cmd` in a session of its own (so it and everything it starts can be found), stdin closed,
      stdout and stderr appended to `log_path` (a temporary file when None).
  wait_ready(p, check, timeout, *, interval=0.05) -> the check's first truthy result
      Calls `check()` until it returns something truthy. ProcessError (one message naming the process,
      with the tail of its log) when the process exits first or `timeout` seconds pass; exceptions of
      `check` itself propagate.
  stop(p, grace=10.0, *, hard=False) -> sorted PIDs of every process seen in the tree
      SIGTERM (SIGKILL when `hard`) to the process, its descendants and its session, wait up to `grace`
      seconds, SIGKILL whatever is left or was started meanwhile, reap, and raise ProcessError if any
      PID still runs. Stopping a process that already exited is not an error.
  still_running(procs) -> PIDs of these psutil.Process objects that still run (recycled PIDs excluded)
  Supervised: .name, .proc (the Popen), .pid, .log_path, .tree(), .known/.seen (every process seen in
      the tree, kept so that a child that left the session is still stopped), .log_tail(lines)

Processes are tracked as psutil.Process objects, which remember their start time, so a PID recycled by
the system is never signalled or counted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")


class ProcessError(RuntimeError):
    """A supervised process could not be started, reached or stopped."""


@dataclass
class Supervised:
    """A process started in its own session, with its log file."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    known: dict[int, psutil.Process] = field(default_factory=dict)  # everything ever seen in the tree

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def seen(self) -> set[int]:
        return set(self.known)

    def tree(self) -> list[psutil.Process]:
        """The process, its descendants and its session's members, plus whatever was seen before and still
        runs (a flow run starts its own session and outlives a killed worker)."""
        found: dict[int, psutil.Process] = {}
        if self.proc.poll() is None:  # once reaped, the PID may belong to someone else
            try:
                root = psutil.Process(self.pid)
                found[root.pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
            except psutil.NoSuchProcess:
                pass
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.pid:
                    found[p.pid] = p
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        for pid, p in self.known.items():
            if pid not in found and _running(p):
                found[pid] = p
        self.known.update(found)
        return list(found.values())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start(name: str, cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
          log_path: Path | None = None) -> Supervised:
    if log_path is None:
        fd, tmp = tempfile.mkstemp(prefix=f"picaco-{name.replace(' ', '-')}-", suffix=".log")
        os.close(fd)
        log_path = Path(tmp)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(cmd), env=None if env is None else dict(env), cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Supervised(name, proc, log_path)


def wait_ready(p: Supervised, check: Callable[[], T | None], timeout: float, *, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        if p.proc.poll() is not None:
            raise ProcessError(f"{p.name} exited with {p.proc.returncode}:\n{p.log_tail()}")
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ProcessError(f"{p.name} not ready after {timeout:.0f} s:\n{p.log_tail()}")
        time.sleep(interval)


def stop(p: Supervised, grace: float = 10.0, *, hard: bool = False) -> list[int]:
    first = signal.SIGKILL if hard else signal.SIGTERM
    for q in p.tree():
        _signal(q, first)
    _reap(p)
    if _wait_gone(p, grace):
        for q in p.tree():  # what ignored SIGTERM, or was started meanwhile
            _signal(q, signal.SIGKILL)
        _reap(p)
        _wait_gone(p, grace)
    _reap(p)
    left = [pid for pid, q in p.known.items() if _running(q)]
    if left:
        raise ProcessError(f"{p.name}: processes still alive after SIGKILL: {left}")
    return sorted(p.seen)


def still_running(procs: Iterable[psutil.Process]) -> list[int]:
    """Takes psutil.Process objects, not PIDs: PIDs wrap around (pid_max is 32768 here), and a recycled PID
    must not count as a process left behind."""
    return sorted(q.pid for q in procs if _running(q))


def _reap(p: Supervised) -> None:
    try:
        p.proc.wait(timeout=0.05)
    except subprocess.TimeoutExpired:
        pass


def _wait_gone(p: Supervised, timeout: float) -> list[int]:
    """Wait until no process of the tree runs; return the PIDs still running."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(p)
        left = [q.pid for q in p.tree()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _running(p: psutil.Process) -> bool:
    """Runs and is the process we saw (not a recycled PID). Zombies count as gone: a process whose parent
    died is reaped by init whenever init gets to it."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(p: psutil.Process, sig: int) -> None:
    try:
        p.send_signal(sig)
    except psutil.NoSuchProcess:
        pass
