"""kill -9 a `picaco optimize` process at a chosen moment: the tool of the resume checks in bench/method.py
and of the reliability campaign's `resume_equal_after_kill` (tests/reliability/cases_run_store.py).

The child is the `picaco optimize` command with every simulator chat call traced ("start k" / "end k" lines
in a trace file), so the parent can kill it while calls are in flight, the worst moment for a resume. The
simulator's embeddings are not traced: they answer at once, without its latency, and replies are embedded
one by one as they arrive, so an embedding "in flight" when the parent looked had mostly ended when the kill
landed (a kill counted as not in flight, one run in several).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys
sys.path.insert(0, {root!r})
from picaco.llm.providers import sim as simmod
trace = open({trace!r}, "a", buffering=1)
counter = [0]
def traced(orig):
    async def wrapper(self, *args):
        counter[0] += 1
        me = counter[0]
        trace.write(f"start {{me}}\n")
        out = await orig(self, *args)
        trace.write(f"end {{me}}\n")
        return out
    return wrapper
simmod.SimProvider.generate = traced(simmod.SimProvider.generate)
sys.argv = ["picaco", "optimize", "--config", {config!r}]
from picaco.cli import main
main()
"""


@dataclass(frozen=True)
class Killed:
    starts: int  # simulator chat calls the child started
    ends: int  # ... and finished
    killed: bool  # False: the child exited before the moment came

    @property
    def in_flight(self) -> int:
        return self.starts - self.ends


def trace_counts(trace: Path) -> tuple[int, int]:
    starts = ends = 0
    if trace.exists():
        for line in trace.read_text().splitlines():
            starts += line.startswith("start")
            ends += line.startswith("end")
    return starts, ends


def during(step_started: Callable[[], bool], step_done: Callable[[], bool], calls: int = 3
           ) -> Callable[[int, int], bool]:
    """The moment inside a step: it has started, at least `calls` of its calls have been sent, some are
    still in flight, and the step has not written its file yet."""
    mark: list[int] = []

    def when(starts: int, ends: int) -> bool:
        if not step_started() or step_done():
            return False
        if not mark:
            mark.append(starts)
        return starts > mark[0] + calls and starts > ends

    return when


def run_and_kill(config: Path, trace: Path, when: Callable[[int, int], bool], cwd: Path | None = None,
                 timeout_s: float = 600) -> Killed:
    """Run `picaco optimize --config config` in a child process and SIGKILL it as soon as
    when(started calls, finished calls) holds (polled every 5 ms)."""
    code = CHILD.format(root=str(ROOT), trace=str(trace), config=str(config))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=cwd or ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    killed = False
    while time.monotonic() < deadline and child.poll() is None:
        if when(*trace_counts(trace)):
            child.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    else:
        if child.poll() is None:  # the moment never came in time: do not leave the child behind
            child.kill()
    child.wait()
    return Killed(*trace_counts(trace), killed=killed)
