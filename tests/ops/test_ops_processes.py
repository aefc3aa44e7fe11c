"""Starting and stopping processes: a process that ignores SIGTERM, with a child in its own session, is
still stopped, and every PID it had is gone afterwards."""

from __future__ import annotations

import os
import sys
import time

import pytest

from ops.prefect_local import OpsError, prefect_env, start_process, still_running, stop

STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
                         start_new_session=True)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_stop_escalates_to_sigkill_and_reaches_a_child_in_another_session(tmp_path):
    m = start_process("stubborn", [sys.executable, "-c", STUBBORN], dict(os.environ), tmp_path / "log")
    deadline = time.monotonic() + 30
    while not (tmp_path / "log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int((tmp_path / "log").read_text().split()[0])
    assert os.getsid(child) == child != m.pid  # the child left the parent's session
    t0 = time.monotonic()
    pids = stop(m, grace=1.0)
    assert {m.pid, child} <= set(pids)
    assert still_running(m.known.values()) == []
    assert time.monotonic() - t0 < 15


def test_stop_of_a_process_that_already_exited(tmp_path):
    m = start_process("quick", [sys.executable, "-c", "pass"], dict(os.environ), tmp_path / "log")
    m.proc.wait(timeout=30)
    assert stop(m, grace=1.0) == []  # nothing left to stop, and no error for it


def test_prefect_env_is_private_and_offline(tmp_path):
    base = {"PREFECT_API_URL": "http://elsewhere/api", "PREFECT_PROFILE": "x", "PATH": "/usr/bin"}
    env = prefect_env(tmp_path / "home", 4321, base)
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"
    assert "PREFECT_PROFILE" not in env
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].endswith(str((tmp_path / "home").resolve() / "prefect.db"))
    assert env["PREFECT_HOME"] == str((tmp_path / "home").resolve())
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"  # what the zombie-run automation waits on


def test_zombie_automation_is_valid_for_the_server_and_waits_three_heartbeats():
    from prefect.server.events.schemas.automations import AutomationCreate, Posture

    from ops.prefect_local import HEARTBEAT_S, zombie_automation

    automation = AutomationCreate.model_validate(zombie_automation())
    trigger = automation.trigger
    assert trigger.posture == Posture.Proactive and trigger.within.total_seconds() == 3 * HEARTBEAT_S
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.Completed", "prefect.flow-run.Failed"} <= trigger.expect
    assert [a.state.value for a in automation.actions] == ["CRASHED"]


def test_server_that_cannot_start_is_reported_with_its_log(tmp_path):
    from ops.prefect_local import start_server

    env = prefect_env(tmp_path / "home", 0, dict(os.environ))
    env["PREFECT_SERVER_API_PORT"] = "not-a-port"
    with pytest.raises(OpsError, match="prefect server exited"):
        start_server(env, tmp_path / "server.log", timeout=120)
