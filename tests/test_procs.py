"""picaco.procs: a supervised process is ready when its check says so, reported in one message with its log
when it dies or times out first, and stopped with its whole tree."""

from __future__ import annotations

import os
import sys
import time

import pytest

from picaco import procs

READY_AFTER_A_WHILE = "import time; time.sleep(0.3); print('ready', flush=True); time.sleep(600)"


def _printed(p: procs.Supervised, word: str):
    return word if word in p.log_path.read_text() else None


def test_wait_ready_returns_the_checks_result_and_stop_leaves_nothing(tmp_path):
    p = procs.start("sleeper", [sys.executable, "-c", READY_AFTER_A_WHILE], log_path=tmp_path / "log")
    try:
        assert procs.wait_ready(p, lambda: _printed(p, "ready"), timeout=30) == "ready"
    finally:
        pids = procs.stop(p, grace=2.0)
    assert p.pid in pids and procs.still_running(p.known.values()) == []
    with pytest.raises(ProcessLookupError):
        os.kill(p.pid, 0)  # reaped, not a zombie


def test_a_process_that_exits_before_ready_is_one_error_with_its_log(tmp_path):
    p = procs.start("doomed", [sys.executable, "-c", "import sys; print('bad flag --x'); sys.exit(3)"],
                    log_path=tmp_path / "log")
    with pytest.raises(procs.ProcessError, match=r"^doomed exited with 3:\nbad flag --x$"):
        procs.wait_ready(p, lambda: False, timeout=30)
    assert procs.stop(p, grace=1.0) == []  # already gone: nothing to stop, no error


def test_a_process_never_ready_times_out_naming_it(tmp_path):
    p = procs.start("mute", [sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        t0 = time.monotonic()
        with pytest.raises(procs.ProcessError, match="^mute not ready after 1 s"):
            procs.wait_ready(p, lambda: None, timeout=1.0)
        assert time.monotonic() - t0 < 10
    finally:
        procs.stop(p, grace=1.0)
        p.log_path.unlink()
